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
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import structlog

from processor.records import Chunk, DeadLetter

log = structlog.get_logger(__name__)

LOCK_POLL_S = 0.02


def _b64(value: bytes | None) -> str | None:
    return None if value is None else base64.b64encode(value).decode()


def _unb64(value: str | None) -> bytes | None:
    return None if value is None else base64.b64decode(value)


def to_line(d: DeadLetter) -> bytes:
    """One dead letter as one JSON line, bytes in base64."""
    return orjson.dumps({
        "topic": d.topic, "partition": d.partition, "offset": d.offset,
        "timestamp_ms": d.timestamp_ms, "key": _b64(d.key), "value": _b64(d.value),
        "headers": [[k, _b64(v)] for k, v in d.headers], "stage": d.stage,
        "reason": d.reason, "error": d.error, "event_type": d.event_type,
        "attempts": d.attempts,
    }) + b"\n"


def from_line(line: bytes) -> DeadLetter:
    """The dead letter of :func:`to_line`; raises ``ValueError``/``KeyError`` if it is not one."""
    raw: dict[str, Any] = orjson.loads(line)
    tp = (str(raw["topic"]), int(raw["partition"]))
    offset = int(raw["offset"])
    return DeadLetter(
        topic=tp[0], partition=tp[1], offset=offset, timestamp_ms=int(raw["timestamp_ms"]),
        key=_unb64(raw["key"]), value=_unb64(raw["value"]),
        headers=[(str(k), _unb64(v) or b"") for k, v in raw["headers"]],
        stage=raw["stage"], reason=raw["reason"], error=raw["error"],
        event_type=raw["event_type"], chunk=Chunk(tp, offset, offset + 1),
        attempts=int(raw.get("attempts", 1)), place="spool",
    )


@dataclass(frozen=True, slots=True)
class Entry:
    """A spooled dead letter and its line, kept byte for byte when the file is rewritten."""

    line: bytes
    dead: DeadLetter


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
                entries.append(Entry(line + b"\n", from_line(line)))
            except (ValueError, KeyError, TypeError) as exc:
                torn = number == len(lines)  # a crash mid-append leaves no final newline
                log.warning("spool line skipped" + (" (torn by a crash)" if torn else ""),
                            path=str(self.path), line=number, error=str(exc)[:200])
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
