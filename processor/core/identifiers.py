"""Quoting of SQL identifiers. Every name that reaches SQL passes through here."""

from __future__ import annotations

from processor.core.settings import IDENTIFIER


def checked(name: str) -> str:
    """``name`` itself, once it matches the safe pattern; ``ValueError`` if it does not."""
    if not IDENTIFIER.match(name):
        raise ValueError(f"{name!r} is not a safe SQL identifier")
    return name


def quote_ident(name: str) -> str:
    """Quote one identifier after checking it against the safe pattern."""
    return f'"{checked(name)}"'


def name_literal(name: str) -> str:
    """A checked identifier as a SQL string literal (for ``format('%I', …)`` in PL/pgSQL).

    Only names of the safe pattern are embedded, so plain quotes cannot be broken out of.
    """
    return f"'{checked(name)}'"


def qualified(schema: str, name: str) -> str:
    """``"schema"."name"``, both parts checked."""
    return f"{quote_ident(schema)}.{quote_ident(name)}"


def columnar_stage_table(table: str) -> str:
    """The per-connection temporary staging table the columnar path's binary COPY writes a
    target table's events into (its columns from ``raw`` left out)."""
    return f"weir_cstage_{table}"


def stage_table(table: str) -> str:
    """The per-connection temporary staging table a target (or child) table's COPY writes
    into, before one statement moves the rows on."""
    return f"weir_stage_{table}"
