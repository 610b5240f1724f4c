"""Weir: an asyncio stream processor that writes Kafka events to PostgreSQL exactly once."""

__version__ = "0.1.0"
