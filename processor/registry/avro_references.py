"""Avro schema references: a registered schema that names types registered apart.

A schema registry lets an Avro schema refer to named types (records, enums, fixed) that are
registered under subjects of their own: the schema's ``references`` list each one's name,
subject and version, and the schema uses the name as a type. Apicurio's Kafka Connect
converter registers Debezium's envelopes so, with the ``Source`` record apart. Every reader
here wants one self-contained schema, so :func:`inline` puts each referenced definition at
the first place its name is used (Avro's own rule: a named type is defined once, then
referred to by name), and the rest of the schema refers to it as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

NAMED = ("record", "enum", "fixed")


def inline(document: Any, referenced: Mapping[str, Any]) -> Any:
    """``document`` with each type of ``referenced`` (full name -> its schema, itself
    self-contained) defined where its name is first used."""
    defined: set[str] = set()

    def walk(node: Any, space: str) -> Any:
        if isinstance(node, str):
            # Avro's rule: a name without a dot is in the enclosing namespace; so is a
            # definition without one, placed here.
            full = node if "." in node or not space else f"{space}.{node}"
            if full in referenced and full not in defined:
                definition = referenced[full]
                defined.update(_names(definition, space))
                return definition
            return node
        if isinstance(node, list):
            return [walk(branch, space) for branch in node]
        if not isinstance(node, dict):
            return node
        kind = node.get("type")
        out = dict(node)
        if kind in NAMED and isinstance(node.get("name"), str):
            full = _full_name(node, space)
            defined.add(full)
            space = full.rpartition(".")[0]
        if kind == "record":
            out["fields"] = [{**f, "type": walk(f.get("type"), space)} if isinstance(f, dict)
                             else f for f in node.get("fields", ())]
        elif kind == "array":
            out["items"] = walk(node.get("items"), space)
        elif kind == "map":
            out["values"] = walk(node.get("values"), space)
        elif not isinstance(kind, str) or kind in referenced:
            out["type"] = walk(kind, space)
        return out

    return walk(document, "")


def _full_name(node: Mapping[str, Any], space: str) -> str:
    name = str(node["name"])
    if "." in name:
        return name
    namespace = node.get("namespace", space)
    return f"{namespace}.{name}" if namespace else name


def _names(node: Any, space: str) -> set[str]:
    found: set[str] = set()
    if isinstance(node, list):
        for branch in node:
            found |= _names(branch, space)
    elif isinstance(node, dict):
        kind = node.get("type")
        if kind in NAMED and isinstance(node.get("name"), str):
            full = _full_name(node, space)
            found.add(full)
            space = full.rpartition(".")[0]
        for field in node.get("fields", ()) if kind == "record" else ():
            if isinstance(field, dict):
                found |= _names(field.get("type"), space)
        found |= _names(node.get("items"), space) | _names(node.get("values"), space)
        if not isinstance(kind, str):
            found |= _names(kind, space)
    return found
