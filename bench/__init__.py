"""Benchmarks of the pipeline's stages against naive references (`python -m bench`; see bench/RESULTS.md)."""
