"""Benchmarks of gpipe_core: ratios measured side by side in one run (see README.md)."""
