"""Benchmarks behind ``specbed bench``; results are recorded in BENCHMARKS.md.

``telemetry`` times the sampling thread; ``eager`` and ``core`` time
verification (the eager path and the static core beside it) on the models
and device that ``device`` describes.
"""
