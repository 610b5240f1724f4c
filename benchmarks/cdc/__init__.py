"""``make bench-cdc``: Debezium change events into a mirror table, Weir against the Debezium
JDBC sink on the same change topics (:mod:`benchmarks.cdc.run`; docs/performance.md)."""
