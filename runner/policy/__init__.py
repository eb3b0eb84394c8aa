"""Who may do what, what may run, and where Taskdeck may fetch: identity, tokens, admission, outbound policy."""
