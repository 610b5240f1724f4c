"""The shared core: what every part of Weir may import, and which imports none of them.

Settings, the units that travel between stages (records, the row's layout, each partition's
progress), the error hierarchy with the one verdict and the one retry policy, stalls,
metrics and logs, and the small helpers (text, PostgreSQL's time, identifiers, connection
arguments, the offsets table).
"""
