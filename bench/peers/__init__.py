"""Helpers of bench/bench_peers.py: lock adapters, the worker processes and
the report (table, Markdown, chart, README section)."""
