"""The Schema Registry: its client, schemas by id, and contracts derived from registered schemas."""
