"""Shared utilities: one-line user errors (errors), atomic writes (atomic_io), command-line helpers (cli), progress
bars (progress) and the runtime: threads, devices, precision, memory format (runtime)."""
