"""Engines execute one workload inside one process and return its measurements."""
