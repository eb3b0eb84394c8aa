"""Operating Taskdeck: the CLI, `up` and the embedded Redis server."""
