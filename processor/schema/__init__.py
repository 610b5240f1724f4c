"""What `weir migrate` makes: table shapes, partitions, rollups, schema evolution."""
