"""Pieces of `loadtest/bench.py`: the closed-loop client, the processes it measures, and the report.

Kept apart from `loadtest/harness` (the k6-driven load scenarios) because this benchmark must run with nothing but
the project venv and a 2-core machine, and must account for every CPU second it spends itself.
"""
