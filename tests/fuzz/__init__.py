"""Fuzz targets, their seeds and the coverage-guided runner (see targets.py)."""
