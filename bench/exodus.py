"""Marker for `bench/__main__.py` (it runs the names of ORDER whose `bench/<name>.py` exists).

`python -m bench.exodus` imports the package `bench/exodus/`, which shadows this module: the
benchmark itself is `bench/exodus/__main__.py`.
"""
