"""Helpers of loadtest/run.py: payloads, server processes, k6 runs, resource sampling and reports."""
