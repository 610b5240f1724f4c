"""A real CDC source for the tests: a PostgreSQL cluster of its own with logical decoding,
captured by Debezium's PostgreSQL connector in a Kafka Connect worker (standalone mode).

The jars come from ``deploy/cdc/pom.xml`` (``scripts/cdc-jars.sh``, run by ``make test``);
the source is a throwaway cluster (:class:`~tests.integration.servers.PrivatePostgres`,
``wal_level = logical``), so the shared stack's own cluster needs no logical decoding and
each test's source, slot and topics are its own.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg

from tests.integration.conftest import KAFKA, REGISTRY_ADDRESS, ROOT, Harness
from tests.integration.servers import PrivatePostgres

STACK = Path(os.environ.get("WEIR_STACK_DIR", ROOT / ".stack")).resolve()
LIBS = STACK / "cdc" / "libs"
MAIN = "org.apache.kafka.connect.cli.ConnectStandalone"
JSON_VALUES = ["value.converter=org.apache.kafka.connect.json.JsonConverter",
               "value.converter.schemas.enable=true"]
# Apicurio's converter, as Confluent's serializers frame a value: magic byte, the 4-byte
# id the registry's Confluent-compatible API knows (the content id), the Avro body.
AVRO_VALUES = ["value.converter=io.apicurio.registry.utils.converter.AvroConverter",
               f"value.converter.apicurio.registry.url=http://{REGISTRY_ADDRESS}/apis/registry/v2",
               "value.converter.apicurio.registry.auto-register=true",
               "value.converter.apicurio.registry.find-latest=true",
               "value.converter.apicurio.registry.as-confluent=true",
               "value.converter.apicurio.registry.use-id=contentId",
               # The converter's default: Debezium's Source record registered apart, each
               # envelope referring to it (Weir inlines the reference).
               "value.converter.apicurio.registry.headers.enabled=false"]


def jars_missing() -> str | None:
    """Why the source cannot run here (None: it can)."""
    if not (LIBS / ".installed").exists():
        return f"no CDC source jars in {LIBS}: run scripts/cdc-jars.sh"
    return None


class DebeziumSource:
    """One source database and the Connect worker that captures it into ``prefix``."""

    def __init__(self, tmp: Path, suffix: str) -> None:
        self.tmp = tmp
        self.prefix = f"cdc_{suffix}"
        self.pg = PrivatePostgres("-c wal_level=logical -c max_replication_slots=4 "
                                  "-c max_wal_senders=4").start()
        self.dsn = self.pg.dsn.rsplit("/", 1)[0] + "/source"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tmp / "connect.log"

    def topic(self, table: str) -> str:
        """The topic Debezium writes a table of the ``public`` schema to."""
        return f"{self.prefix}.public.{table}"

    async def create(self, ddl: list[str]) -> None:
        """The source database and its tables."""
        admin = await asyncpg.connect(self.pg.dsn)
        try:
            await admin.execute("CREATE DATABASE source")
        finally:
            await admin.close()
        conn = await asyncpg.connect(self.dsn)
        try:
            for sql in ddl:
                await conn.execute(sql)
        finally:
            await conn.close()

    def start(self, publication: str = "filtered", partitions: int = 1,
              avro: bool = False, avro_keys: bool = False) -> None:
        """Start the worker with the connector; it snapshots, then streams every change.

        ``publication``: Debezium's ``publication.autocreate.mode``; ``all_tables`` captures
        tables created after the start too. A change topic that does not exist yet is
        created by Connect with ``partitions`` (the stack's broker creates none itself).
        ``avro``: the values in Avro through the stack's registry (Apicurio's converter in
        Confluent's framing, each schema under ``<topic>-value``), decimals exact;
        ``avro_keys``: the keys too (under ``<topic>-key``)."""
        worker = self.tmp / "worker.properties"
        worker.write_text("\n".join([
            f"bootstrap.servers={KAFKA}",
            # The record keys are the primary key as JSON ({"id":1}) (or Avro), the values the
            # change events with their embedded schema, as the JSON converter writes them by
            # default (or Avro).
            *([line.replace("value.", "key.", 1) for line in AVRO_VALUES] if avro_keys else
              ["key.converter=org.apache.kafka.connect.json.JsonConverter",
               "key.converter.schemas.enable=false"]),
            *(AVRO_VALUES if avro else JSON_VALUES),
            f"offset.storage.file.filename={self.tmp / 'offsets'}",
            "offset.flush.interval.ms=1000",
            "listeners=http://127.0.0.1:0",
            "plugin.discovery=service_load",
        ]) + "\n")
        connector = self.tmp / "connector.properties"
        connector.write_text("\n".join([
            "name=source",
            "connector.class=io.debezium.connector.postgresql.PostgresConnector",
            "tasks.max=1",
            "database.hostname=127.0.0.1", f"database.port={self.pg.port}",
            "database.user=weir", "database.password=weir",  # trust: any password
            "database.dbname=source",
            f"topic.prefix={self.prefix}",
            "plugin.name=pgoutput",
            "slot.name=weir", "publication.name=weir",
            f"publication.autocreate.mode={publication}",
            "table.include.list=public\\..*",
            # JSON: numbers as JSON numbers (not Kafka Connect's base64 decimal bytes); Avro:
            # Avro's decimal.
            f"decimal.handling.mode={'precise' if avro else 'double'}",
            "tombstones.on.delete=true",
            # Truncates too (skipped by default): the mirrors choose what each one does.
            "skipped.operations=none",
            "topic.creation.default.replication.factor=1",
            f"topic.creation.default.partitions={partitions}",
        ]) + "\n")
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                ["java", "-Xmx512m", "-Djava.awt.headless=true",
                 f"-Dlog4j2.configurationFile={ROOT / 'deploy/cdc/log4j2.properties'}",
                 "-cp", f"{LIBS}/*", MAIN, str(worker), str(connector)],
                stdout=log, stderr=subprocess.STDOUT)

    def streaming(self, timeout: float = 120) -> None:
        """Wait until the connector streams changes (after its snapshot)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            assert self.proc.poll() is None, self.tail()
            if "Starting streaming" in self.log.read_text(errors="replace"):
                return
            time.sleep(0.5)
        raise AssertionError(f"the connector did not start streaming:\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        """The end of the worker's log."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def drop(self) -> None:
        """Stop the worker and delete the source cluster."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.pg.stop()


def normal(value: Any) -> Any:
    """A value as both sides compare: numbers by value, times in UTC, uuids as text."""
    if isinstance(value, Decimal | float) and not isinstance(value, bool):
        return Decimal(repr(value)) if isinstance(value, float) else value.normalize()
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


async def differences(source: DebeziumSource, h: Harness,
                      compared: dict[str, tuple[str, str]]) -> dict[str, int] | str:
    """Per table, how many rows differ between the source and its mirror (on ``compared``:
    the source's columns and the mirror's); or what the mirror still lacks (a table, a
    column)."""
    src = await asyncpg.connect(source.dsn)
    dst = await asyncpg.connect(h.dsn, server_settings={"search_path": h.schema})
    out = {}
    try:
        for table, (theirs, ours) in compared.items():
            a = {tuple(map(normal, r)) for r in await src.fetch(f"SELECT {theirs} FROM {table}")}
            mirrored = ours if " FROM " in ours else f"{ours} FROM {table}"
            b = {tuple(map(normal, r)) for r in await dst.fetch(f"SELECT {mirrored}")}
            out[table] = len(a ^ b)
    except (asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError) as exc:
        return str(exc)
    finally:
        await src.close()
        await dst.close()
    return out


def converge(source: DebeziumSource, h: Harness, proc: subprocess.Popen[bytes],
             compared: dict[str, tuple[str, str]], timeout: float = 240) -> None:
    """Wait until every mirror of ``compared`` equals its source, ``proc`` (Weir) alive."""
    deadline = time.monotonic() + timeout
    while (diff := asyncio.run(differences(source, h, compared))) != dict.fromkeys(
            compared, 0):
        assert time.monotonic() < deadline, (diff, source.tail())
        assert proc.poll() is None, h.why_exited(proc)
        time.sleep(1)


def sigkilled_while(h: Harness, busy: threading.Thread, every_s: float = 3.0,
                    at_least: int = 3) -> tuple[subprocess.Popen[bytes], int]:
    """Weir started, and SIGKILLed and started again every ``every_s`` while ``busy`` (the
    source's workload) runs, and at least ``at_least`` times (a quiet machine runs the
    workload in a few seconds; the later kills land while Weir catches up); the last Weir
    process, and how many were killed."""
    kills = 0
    proc = h.start("w0")
    while busy.is_alive() or kills < at_least:
        time.sleep(every_s)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
        kills += 1
        proc = h.start(f"w{kills}")
    busy.join()
    return proc, kills
