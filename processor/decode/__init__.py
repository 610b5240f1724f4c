"""Decode stage: bytes to validated, transformed table rows."""
