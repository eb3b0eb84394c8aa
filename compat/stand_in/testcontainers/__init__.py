"""Stand-in for the `testcontainers` package on ARQ's test run (compat/arq_suite.py): no Docker here."""
