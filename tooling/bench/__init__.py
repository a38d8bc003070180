"""Benchmarks: measured, never asserted in tests (tests only check a report is sane)."""
