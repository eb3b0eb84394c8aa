"""The job store: the Redis keys, the transition specs and the Lua scripts that apply them, metric counters."""
