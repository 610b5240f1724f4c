"""Benchmarks: Weir against this machine's limits and its peers (``make bench``)."""
