"""A fetch's framed records of one topic through the columnar path.

Records in the usual framing (magic byte 0 and the schema id, no schema header) whose id an
Avro batch reader covers (:mod:`processor.decode.formats.avro_columns`) are read a schema id
at a time, straight into the contract's columns and their JSON. Every other record (another
format, a schema the batch reader does not cover, any odd framing) goes as its JSON view
(:meth:`~processor.decode.decoder.Decoder.json_view`) through the plan's JSON reader. The
parts are merged back into one result in record order; what neither is sure of, the row
path reads again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from processor.decode.columnar import ColumnarPlan, Decoded
from processor.decode.decoder import Decoder
from processor.decode.formats.framing import MAGIC, PREFIX

Part = tuple[list[int], Decoded]  # the records' indices in the fetch, and their result


def decode_framed_batch(plan: ColumnarPlan, decoder: Decoder, topic: str, records: Sequence[Any]
                  ) -> Decoded:
    """``records`` (each partition's in offset order) of framed ``topic``, as far as the
    columnar path can. Raises :class:`~processor.decode.framed.SchemaPending` for a schema
    id not fetched yet."""
    framed = decoder.framed_topic(topic)
    groups: dict[int, list[int]] = {}
    others: list[int] = []
    for i, r in enumerate(records):
        value = r.value
        if (value is not None and not r.headers and len(value) > PREFIX
                and value[0] == MAGIC and len(value) <= plan.max_bytes):
            groups.setdefault(int.from_bytes(value[1:PREFIX], "big"), []).append(i)
        else:
            others.append(i)
    parts: list[Part] = []
    for schema_id, members in groups.items():
        reader = framed.columns(schema_id, plan.read)
        if reader is None:
            others.extend(members)
            continue
        table, raw, unsure = reader.read([records[i].value[PREFIX:] for i in members])
        offsets, timestamps, partitions, keys, headers = _where(plan, records, members)
        parts.append((members, plan.decode_read(table, raw, unsure, offsets, timestamps,
                                                topic, partitions, keys, headers)))
    if others:
        others.sort()
        views = [decoder.json_view(topic, records[i].value, records[i].headers)
                 for i in others]
        offsets, timestamps, partitions, keys, headers = _where(plan, records, others)
        parts.append((others, plan.decode(views, offsets, timestamps, topic, partitions,
                                          decoder.is_rendered(topic), keys, headers)))
    return _merge(parts)


def _where(plan: ColumnarPlan, records: Sequence[Any], members: list[int]
           ) -> tuple[list[int], list[int], list[int], list[bytes | None], list[Any]]:
    """The records' offsets, timestamps and partitions; their keys and headers when the
    plan's mapped columns read them."""
    mapped = plan.reads_records
    return ([records[i].offset for i in members], [records[i].timestamp for i in members],
            [records[i].partition for i in members],
            [records[i].key for i in members] if mapped else [],
            [records[i].headers for i in members] if mapped else [])


def _merge(parts: list[Part]) -> Decoded:
    """The parts' results as one, their indices the fetch's, the columns in record order."""
    def glob(members: list[int], local: list[int]) -> list[int]:
        return [members[j] for j in local]

    taken = [glob(m, d.taken) for m, d in parts]
    tables = [d.columns for _, d in parts if d.columns is not None]
    reasons: Counter[str] = Counter()
    for _, d in parts:
        reasons.update(d.reasons)
    flat = [i for t in taken for i in t]
    columns = None
    if tables:
        columns = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
        if len(tables) > 1:
            order = np.argsort(np.array(flat), kind="stable")
            columns = columns.take(pa.array(order))
            flat = sorted(flat)
    return Decoded(columns, flat, sorted(i for m, d in parts for i in glob(m, d.fallback)),
                   sorted(i for m, d in parts for i in glob(m, d.dropped)), reasons)
