"""The columnar path's COPY: blocks of events as PostgreSQL's binary COPY format, by pgpq.

A block (:class:`~processor.core.records.Block`) holds its rows as Arrow columns laid out as
its table's columnar stage (:meth:`~processor.schema.tables.TableSpec.columnar_columns`);
pgpq's Rust encoder writes them in the binary format the stage reads, in one pass per column
with no Python call per value. The stage's columns from ``raw`` (numerics, jsonb
sub-documents) are made by PostgreSQL in the insert that follows.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import numpy as np
import pgpq
import pyarrow as pa
from pgpq import encoders
from pgpq import schema as pg_types

from processor.core.errors import encoding_rows
from processor.core.pgtime import MICROS_PER_DAY, PG_EPOCH_US
from processor.core.records import Block
from processor.core.row_layout import RAW
from processor.schema.tables import TableSpec


def _encoder(schema: pa.Schema) -> Any:
    """One COPY's encoder (pgpq's encoders serve one COPY each): ``raw`` is jsonb, every
    other column pgpq's own choice for its Arrow type (a 16-byte binary is a uuid's)."""
    raw = schema.field(len(schema) + RAW)
    chosen = {f.name: pgpq.ArrowToPostgresBinaryEncoder.infer_encoder(f) for f in schema}
    chosen[raw.name] = encoders.StringEncoderBuilder.new_with_output(raw, pg_types.Jsonb())
    return pgpq.ArrowToPostgresBinaryEncoder.new_with_encoders(schema, chosen)


def encode(blocks: Sequence[Block]) -> bytes:
    """The binary COPY stream of every row of ``blocks`` (one table's, one schema)."""
    encoder = _encoder(blocks[0].columns.schema)
    with encoding_rows():
        parts = [encoder.write_header()]
        parts += [encoder.write_batch(batch) for block in blocks
                  for batch in block.columns.to_batches()]
        parts.append(encoder.finish())
    return b"".join(parts)


async def copy_blocks(conn: Any, spec: TableSpec, blocks: Sequence[Block]) -> None:
    """COPY ``blocks`` into ``spec``'s columnar stage."""
    await conn.copy_to_table(spec.columnar_stage, source=_once(encode(blocks)),
                             columns=list(spec.columnar_columns), format="binary")


async def _once(body: bytes) -> AsyncIterator[bytes]:
    # An async iterable: asyncpg would take bytes given as the source for a file's path.
    yield body


def block_days(block: Block) -> list[int]:
    """The first instant (timestamptz µs) of every UTC day among a block's event times."""
    micros = block.columns.column("event_time").cast(pa.int64()).to_numpy()
    days = np.unique((micros - PG_EPOCH_US) // MICROS_PER_DAY)
    return [int(d) * MICROS_PER_DAY for d in days]
