"""``weir run --workers N``: a supervisor of N worker processes in one consumer group."""
