"""The local spool: the last place a dead letter goes when neither Kafka nor PostgreSQL takes it.

One append-only file of JSON lines per consumer group in ``dead_letters.spool_dir``. Each
append is written and ``fsync``-ed before it returns, so a spooled dead letter survives a
crash of the process or the machine. A crash mid-append can leave a torn last line; reading
skips it with a warning (the batch it belonged to was not committed, so its events are read
from Kafka again). Draining rewrites the file without what was placed elsewhere: a new file,
fsynced, renamed over the old one.

Every access holds an exclusive ``flock`` on a lock file, so processes sharing the folder
never interleave a rewrite with an append.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import os
import re
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import structlog

from processor.core.records import Chunk, DeadLetter, Header
from processor.deadletter.stored import HEADERS_FORMAT, decode_headers, encode_headers, safe_text

log = structlog.get_logger(__name__)

LOCK_POLL_S = 0.02


def _b64(value: bytes | None) -> str | None:
    return None if value is None else base64.b64encode(value).decode()


def _unb64(value: str | None) -> bytes | None:
    return None if value is None else base64.b64decode(value)


def to_line(d: DeadLetter) -> bytes:
    """One dead letter as one JSON line: key and value in base64, headers as the table
    stores them (``deadletter/stored.py``), text made safe for the table it drains into."""
    return orjson.dumps({
        "topic": d.topic, "partition": d.partition, "offset": d.offset,
        "timestamp_ms": d.timestamp_ms, "key": _b64(d.key), "value": _b64(d.value),
        "headers": encode_headers(d.headers), "headers_format": HEADERS_FORMAT,
        "stage": d.stage, "reason": d.reason, "error": safe_text(d.error),
        "event_type": safe_text(d.event_type), "attempts": d.attempts,
        "spooled_at_ms": time.time_ns() // 1_000_000,
    }) + b"\n"


def _headers(raw: dict[str, Any]) -> list[Header]:
    if raw.get("headers_format") == HEADERS_FORMAT:
        return decode_headers(raw["headers"])
    # A line spooled by an earlier Weir (before an upgrade): every value in base64.
    return [(str(k), _unb64(v)) for k, v in raw["headers"]]


def _dead(raw: dict[str, Any]) -> DeadLetter:
    tp = (str(raw["topic"]), int(raw["partition"]))
    offset = int(raw["offset"])
    return DeadLetter(
        topic=tp[0], partition=tp[1], offset=offset, timestamp_ms=int(raw["timestamp_ms"]),
        key=_unb64(raw["key"]), value=_unb64(raw["value"]), headers=_headers(raw),
        stage=raw["stage"], reason=raw["reason"], error=raw["error"],
        event_type=raw["event_type"], chunk=Chunk(tp, offset, offset + 1),
        attempts=int(raw.get("attempts", 1)), place="spool",
    )


def from_line(line: bytes) -> DeadLetter:
    """The dead letter of :func:`to_line`; raises ``ValueError``/``KeyError``/``TypeError``
    if it is not one."""
    return _dead(orjson.loads(line))


@dataclass(frozen=True, slots=True)
class Entry:
    """A spooled dead letter and its line, kept byte for byte when the file is rewritten."""

    line: bytes
    dead: DeadLetter
    spooled_at: datetime | None = None  # None for lines of an earlier Weir

    @classmethod
    def parse(cls, line: bytes) -> Entry:
        """The entry of one line (without its newline); raises as :func:`from_line` does."""
        raw: dict[str, Any] = orjson.loads(line)
        ms = raw.get("spooled_at_ms")
        at = None if ms is None else datetime.fromtimestamp(int(ms) / 1000, UTC)
        return cls(line + b"\n", _dead(raw), at)


class Spool:
    """The spool file of one consumer group."""

    def __init__(self, folder: Path, group: str) -> None:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", group)
        self.path = folder / f"{safe}.jsonl"
        self._lock_path = folder / f"{safe}.lock"
        self._folder = folder
        self._local = asyncio.Lock()

    async def append(self, dead: Sequence[DeadLetter]) -> None:
        """Append ``dead`` durably; raises ``OSError`` if the disk does not take them."""
        data = b"".join(to_line(d) for d in dead)
        async with self._locked():
            await asyncio.to_thread(self._append, data)

    def _append(self, data: bytes) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data  # a line torn by a crash must not swallow this one
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    async def entries(self) -> list[Entry]:
        """What the spool holds now."""
        async with self._locked():
            return await asyncio.to_thread(self._read)

    def _read(self) -> list[Entry]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        lines = data.split(b"\n")
        entries: list[Entry] = []
        for number, line in enumerate(lines, start=1):
            if not line:
                continue
            try:
                entries.append(Entry.parse(line))
            except (ValueError, KeyError, TypeError) as exc:
                torn = number == len(lines)  # a crash mid-append leaves no final newline
                log.warning("spool line skipped" + (" (torn by a crash)" if torn else ""),
                            path=str(self.path), line=number, error=str(exc)[:200])
        return entries

    def peek(self) -> list[Entry]:
        """What the spool holds, read without its lock and without writing anything.

        For ``weir dlq list | show`` beside a running Weir: a rewrite replaces the file by a
        rename, so one read sees a whole file, old or new. A last line without its newline
        is an append in progress (or torn by a crash) and is left out.
        """
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        whole = data[:data.rfind(b"\n") + 1]
        entries: list[Entry] = []
        for line in whole.split(b"\n"):
            if line:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    entries.append(Entry.parse(line))
        return entries

    @contextlib.asynccontextmanager
    async def drain(self) -> AsyncIterator[tuple[list[Entry], _Keeper]]:
        """Hold the spool while its entries are placed; keep only what ``keep`` was given.

        Appends wait meanwhile, so nothing spooled during a drain can be lost by the rewrite.
        """
        if not self.path.exists():
            # Nothing was ever spooled here: do not create the folder just to look.
            yield [], _Keeper()
            return
        async with self._locked():
            entries = await asyncio.to_thread(self._read)
            keeper = _Keeper()
            yield entries, keeper
            if entries:
                await asyncio.to_thread(self._rewrite, keeper.kept)

    def _rewrite(self, kept: Iterable[Entry]) -> None:
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("wb") as out:
            out.writelines(e.line for e in kept)
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(self.path)
        self._fsync_folder()

    def _fsync_folder(self) -> None:
        fd = os.open(self._folder, os.O_RDONLY)
        try:
            os.fsync(fd)  # makes the rename itself durable
        finally:
            os.close(fd)

    @contextlib.asynccontextmanager
    async def _locked(self) -> AsyncIterator[None]:
        async with self._local:
            await asyncio.to_thread(self._folder.mkdir, parents=True, exist_ok=True)
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        await asyncio.sleep(LOCK_POLL_S)  # another process holds it
                yield
            finally:
                os.close(fd)  # releases the flock


class _Keeper:
    """Collects the entries a drain could not place."""

    def __init__(self) -> None:
        self.kept: list[Entry] = []

    def keep(self, entries: Iterable[Entry]) -> None:
        self.kept.extend(entries)
