"""The operators' commands beside ``weir run``: lag, offsets, the dead letters (``weir
dlq``), the contract page, check-event and produce. Each reads what the runtime wrote
(tables, topics, the spool) through the shared core and the owners of those tables; none
reaches into a stage's internals, and nothing but the command line imports them.
"""
