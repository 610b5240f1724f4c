"""Wire formats: the Confluent framing and one module per payload format.

Each format ends in the same JSON-shaped event the JSON path makes.
"""


class SchemaMismatch(ValueError):
    """A writer's schema cannot be read as the contract's (Avro's schema resolution, or
    Protobuf's by field number); the message names each field."""
