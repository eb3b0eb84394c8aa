"""Everything fetched from outside on a user's behalf: the one outbound policy, and the sources (pages, feeds)
the context tasks keep for the generative types."""
