"""Quoting of SQL identifiers. Every name that reaches SQL passes through here."""

from __future__ import annotations

from processor.settings import IDENTIFIER


def quote_ident(name: str) -> str:
    """Quote one identifier after checking it against the safe pattern."""
    if not IDENTIFIER.match(name):
        raise ValueError(f"{name!r} is not a safe SQL identifier")
    return f'"{name}"'


def qualified(schema: str, name: str) -> str:
    """``"schema"."name"``, both parts checked."""
    return f"{quote_ident(schema)}.{quote_ident(name)}"
