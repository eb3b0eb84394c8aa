"""Read models over the store, for pages, the CLI and the API: history, live view, events, metrics, LLM status."""
