"""What `weir migrate` makes: table shapes, partitions, rollups, schema evolution. The
running sink's partition upkeep calls what it installed (:mod:`processor.sink.partitions`).
"""
