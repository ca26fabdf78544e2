"""Test helpers for the redlease test suite (real Redis servers, TCP proxy, worker processes)."""
