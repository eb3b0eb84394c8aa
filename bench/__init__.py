"""Taskdeck benchmarks (issue 7): see bench/README.md. Scripts run as `.venv/bin/python bench/NAME.py`."""
