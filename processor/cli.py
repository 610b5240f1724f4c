"""The ``weir`` command line: run, migrate, check-config, produce, lag."""

from __future__ import annotations

import os
import re
import secrets
import sys
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import asyncpg
import orjson
import structlog
import typer
import uvloop

from processor import __version__
from processor.contracts import Contract, ContractError, load_contracts
from processor.core import logs
from processor.core.errors import ConfigError, InstanceTaken, MigrationRequired, describe
from processor.core.settings import Settings, load_settings
from processor.decode.decoder import Decoder
from processor.runtime import gc_tuning
from processor.runtime.app import Pipeline
from processor.transform.loader import TransformLoadError, load_chains

if TYPE_CHECKING:
    from processor.transform.chain import Chain

T = TypeVar("T")
EXIT_CONFIG = 2
app = typer.Typer(help="Weir: Kafka in, PostgreSQL out, exactly once.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)
log = structlog.get_logger("weir")

ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", envvar="WEIR_CONFIG", help="The YAML config file.")
]


Loaded = tuple[Settings, dict[str, Contract], dict[str, "Chain | None"]]


def _load(config: Path, wait_for_registry: bool = False) -> Loaded:
    """Settings, compiled contracts and loaded transforms, or exit 2 with every problem named.

    Transforms are imported here, once, so that a bad reference stops every command (and
    ``check-config``) before anything runs; ``weir run`` hands these very functions on.
    ``wait_for_registry``: a registry that does not answer for a contract is waited for
    (``weir run``), not a configuration error (every other command).
    """
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        _fail(str(exc))
    logs.configure(settings.logging.level, settings.logging.format,
                   settings.logging.repeat_window_s)
    try:
        contracts = load_contracts(settings, wait_for_registry)
        transforms = load_chains(settings)
    except (ContractError, TransformLoadError) as exc:
        _fail("invalid configuration:\n" + "\n".join(f"  - {p}" for p in str(exc).splitlines()))
    try:
        # Every event type's row plan, as the decode stage makes it: a mapped column's
        # default that its column cannot hold is refused here, not at the first event.
        Decoder(settings, contracts, transforms)
    except ConfigError as exc:
        _fail(str(exc))
    return settings, contracts, transforms


def _fail(message: str, code: int = EXIT_CONFIG) -> typer.Exit:
    typer.echo(f"weir: {message}", err=True)
    raise typer.Exit(code)


def _causes(exc: BaseException) -> list[BaseException]:
    """The real errors inside a task group's ExceptionGroup (or the error itself)."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _causes(inner)]
    return [exc]


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return uvloop.run(coro)


@app.command("check-config")
def check_config(config: Annotated[Path, typer.Argument(help="The YAML config file.")]) -> None:
    """Validate a config file (settings, schemas, transforms) and exit; 0 if it is good."""
    settings, contracts, _ = _load(config)
    typer.echo(f"{config}: ok — {len(settings.topics)} topic(s), event types: "
               + ", ".join(f"{n} v{c.version} -> {settings.event_types[n].table}"
                           for n, c in contracts.items()))


@app.command("check-event")
def check_event(
    config: ConfigOption,
    topic: Annotated[str, typer.Option(help="The topic the record is on (one of the config's).")],
    file: Annotated[Path | None, typer.Option(
        "--file", help="Read the record's value from this file, as bytes (default: standard "
        "input). Framed Avro and Protobuf are binary: pass them as they are.")] = None,
    key: Annotated[str | None, typer.Option(help="The record's key (UTF-8).")] = None,
    header: Annotated[list[str] | None, typer.Option(
        help="A record header NAME=VALUE (repeatable; VALUE as UTF-8).")] = None,
    tombstone: Annotated[bool, typer.Option(
        help="Check a record without a value (a tombstone): --key names the row it deletes.",
    )] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Print the verdict `weir run` would give one record value: its row, filtered, or its
    dead letter. The record is taken as at partition 0, offset 0, with the current time as
    its Kafka timestamp. Exit 0 for a row or a filtered event, 1 for a dead letter, 2 for a
    usage, config or infrastructure problem (the schema registry not answering)."""
    settings, contracts, transforms = _load(config)
    from processor.commands.check_event import CheckRefused
    from processor.commands.check_event import check_event as check
    headers: list[tuple[str, bytes | None]] = []
    for item in header or []:
        name, sep, text = item.partition("=")
        if not sep or not name:
            _fail(f"--header {item!r}: give NAME=VALUE")
        headers.append((name, text.encode()))
    value: bytes | None = None
    if tombstone:
        if file is not None:
            _fail("--tombstone has no value: leave out --file")
    elif file is not None:
        try:
            value = file.read_bytes()
        except OSError as exc:
            _fail(f"--file {str(file)!r}: {exc.strerror or exc}")
    elif sys.stdin.isatty():
        _fail("give the record's value with --file F or on standard input")
    else:
        value = sys.stdin.buffer.read()
    try:
        verdict = _run(check(settings, contracts, transforms, topic, value,
                             key.encode() if key is not None else None, headers))
    except CheckRefused as exc:
        _fail(str(exc))
    typer.echo(verdict.to_json() if as_json else verdict.render())
    raise typer.Exit(verdict.exit_code)


@app.command()
def migrate(
    config: ConfigOption,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the statements it would run (the plan), apply nothing.")
    ] = False,
) -> None:
    """Create or update Weir's tables (idempotent)."""
    settings, contracts, _ = _load(config)

    async def go() -> list[str]:
        from processor.core.connections import connect
        from processor.schema.migrate import migrate as apply
        from processor.schema.migrate import plan
        conn = await connect(settings)
        try:
            if dry_run:
                return await plan(conn, settings, contracts)
            return await apply(conn, settings, contracts)
        finally:
            await conn.close()

    from processor.schema.evolution import SchemaIncompatible
    try:
        out = _run(go())
    except SchemaIncompatible as exc:
        _fail(str(exc), code=1)
    if dry_run:
        typer.echo(f"-- weir migrate --dry-run: schema {settings.postgres.schema_name!r}, "
                   "nothing applied; these statements would run in one transaction (those "
                   "that create run as no-ops where the object exists)")
        for sql in out:
            typer.echo(sql.rstrip() + ";")
        return
    typer.echo(f"migrated schema {settings.postgres.schema_name!r}: {', '.join(out)}")
    if settings.dead_letters.topic_enabled:
        from processor.deadletter.topic import ensure_dead_letter_topics
        topics = _run(ensure_dead_letter_topics(settings))
        typer.echo(f"dead-letter topics: {', '.join(topics)}")


def _worker_count(value: str) -> int:
    """``--workers``: a number, or ``auto`` for the CPUs this process may run on."""
    if value == "auto":
        return len(os.sched_getaffinity(0))
    if not value.isdigit() or int(value) < 1:
        raise _fail(f"--workers {value!r}: give a number of workers (1 or more) or auto")
    return int(value)


@app.command()
def run(
    config: ConfigOption,
    until_caught_up: Annotated[bool, typer.Option(
        help="Exit 0 once every assigned partition is written up to its end offset.")] = False,
    workers: Annotated[str, typer.Option(
        help="Worker processes in the consumer group: a number, or auto (one per CPU this "
             "process may use). 1 runs in this process.")] = "1",
    worker_id: Annotated[int | None, typer.Option(
        hidden=True, help="Set by the supervisor of --workers for each worker.")] = None,
) -> None:
    """Run the processor: consume, decode, transform, write, until SIGTERM or SIGINT."""
    count = _worker_count(workers)
    if worker_id is not None:
        from processor.workers.child import bind_worker
        bind_worker(worker_id)
    settings, contracts, transforms = _load(config, wait_for_registry=True)
    if count > 1 and worker_id is None:
        raise typer.Exit(_supervise(config, settings, count, until_caught_up))
    from processor.runtime.startup import StartupRefused

    async def go() -> int:
        from processor.runtime.mirrors import Mirrors
        from processor.workers.child import run_worker
        mirrors = Mirrors(settings, contracts) if settings.cdc.mirrors else None
        while True:
            found = await mirrors.prepare() if mirrors is not None else None
            pipeline = Pipeline(found.settings if found else settings,
                                found.contracts if found else contracts, transforms, mirrors)
            gc_tuning.tune()
            code = await (pipeline.run(until_caught_up=until_caught_up) if worker_id is None
                          else run_worker(pipeline, until_caught_up))
            if pipeline.reloading is None:
                return code
            log.info("starting again", reason=pipeline.reloading)

    try:
        code = _run(go())
    except StartupRefused as exc:
        _fail(str(exc), code=EXIT_CONFIG)
    except (MigrationRequired, InstanceTaken) as exc:
        _fail(str(exc), code=1)
    except (Exception, ExceptionGroup) as exc:
        log.critical("weir stopped on an error; nothing past the last commit is lost",
                     error="; ".join(describe(e) for e in _causes(exc)),
                     exc_info=exc)
        raise typer.Exit(1) from None
    raise typer.Exit(code)


def _supervise(config: Path, settings: Settings, count: int, until_caught_up: bool) -> int:
    """Run ``count`` workers under a supervisor; its exit code."""
    from processor.workers.budget import BudgetExceeded
    from processor.workers.supervisor import Supervisor, process_spawner

    async def go() -> int:
        spawn = process_spawner(config, settings, until_caught_up)
        return await Supervisor(settings, count, spawn, until_caught_up).run()

    try:
        return _run(go())
    except BudgetExceeded as exc:
        raise _fail(str(exc), code=EXIT_CONFIG) from None
    except (Exception, ExceptionGroup) as exc:
        # The supervisor itself failed (a worker that cannot even be spawned, a taken
        # port); the workers it started drain on their own once they see it gone.
        log.critical("weir's supervisor stopped on an error",
                     error="; ".join(describe(e) for e in _causes(exc)),
                     exc_info=exc)
        raise typer.Exit(1) from None


@app.command()
def produce(
    config: ConfigOption,
    count: Annotated[int, typer.Option(min=1, help="Events to publish.")] = 10_000,
    rate: Annotated[float, typer.Option(
        min=0, help="Events per second; 0 = as fast as possible.")] = 0,
    event_type: Annotated[list[str] | None, typer.Option(
        "--event-type", "-t", help="Event types to mix (repeatable); default: all.")] = None,
    seed: Annotated[int | None, typer.Option(
        help="Random seed: same seed, same events (default: a new one, printed).")] = None,
    invalid_ratio: Annotated[float, typer.Option(
        min=0, max=1, help="Share of deliberately broken records (to see the dead letters).",
    )] = 0.0,
    ack_log: Annotated[Path | None, typer.Option(
        help="Append every acknowledged record (topic, partition, offset, key, seq) as JSON.",
    )] = None,
    spread_days: Annotated[float, typer.Option(
        help="Spread event times over this many past days.")] = 0.0,
    seq_base: Annotated[int, typer.Option(
        min=0, help="Start every key's sequence after this number (for a second run).")] = 0,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    fmt: Annotated[str | None, typer.Option(
        "--format", help="Write every topic in this format (json, avro, protobuf, "
        "jsonschema) instead of each topic's configured one; the framed formats register "
        "the example schemas in the schema registry.")] = None,
    topic: Annotated[str | None, typer.Option(
        help="Publish only to this configured topic, in its format (default: the first "
        "topic carrying each event type).")] = None,
    rich: Annotated[bool, typer.Option(
        help="Orders with what analysts map to columns: a shipping address, tags, an "
        "epoch-milliseconds time and a tenant header.")] = False,
) -> None:
    """Publish realistic sample events for the example pipeline."""
    settings, _, _ = _load(config)
    from processor.commands.produce.producer import produce as publish
    from processor.commands.produce.sample import SampleEvents
    known = SampleEvents().event_types
    carried = {t.event_type for t in settings.topics if topic in (None, t.name)}
    if topic is not None and not carried:
        _fail(f"--topic {topic!r} is not one of the configured topics "
              f"{[t.name for t in settings.topics]}")
    chosen = event_type or [t for t in known if t in settings.event_types
                            and (None in carried or t in carried)]
    unknown = [t for t in chosen if t not in known or t not in settings.event_types]
    if unknown or not chosen:
        _fail(f"cannot produce {unknown or 'anything'}: sample events exist for {known} "
              f"and the config defines {sorted(settings.event_types)}")
    if fmt is not None and fmt not in ("json", "avro", "protobuf", "jsonschema"):
        _fail(f"--format {fmt!r} is not one of json, avro, protobuf, jsonschema")
    if fmt not in (None, "json") and settings.schema_registry.url is None:
        _fail(f"--format {fmt} needs schema_registry.url in the config")
    seed = seed if seed is not None else secrets.randbelow(2**31)
    report = _run(publish(settings, count, rate or None, chosen, seed, ack_log,
                          progress and sys.stderr.isatty(), spread_days, seq_base,
                          invalid_ratio, fmt, topic, rich))
    typer.echo(f"produced {report.count} events (seed {seed}) in {report.seconds:.1f}s "
               f"({report.count / max(report.seconds, 1e-9):,.0f}/s): "
               + ", ".join(f"{t}={n}" for t, n in report.by_topic.items()))


@app.command()
def lag(
    config: ConfigOption,
    group: Annotated[str | None, typer.Option(
        help="Consumer group to inspect (default: kafka.group_id).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    watch: Annotated[bool, typer.Option(help="Refresh until Ctrl-C.")] = False,
    interval: Annotated[float, typer.Option(
        min=0.1, help="Seconds between the two samples that give the rate.")] = 2.0,
) -> None:
    """Lag per topic-partition from Kafka and PostgreSQL, with write rate and time to catch up."""
    settings, _, _ = _load(config)
    from processor.commands.lag import render, sample_rates

    async def once() -> list[Any]:
        return await sample_rates(settings, group, interval)

    try:
        while True:
            lags = _run(once())
            if as_json:
                typer.echo(orjson.dumps([x.as_dict() for x in lags],
                                        option=orjson.OPT_INDENT_2).decode())
            else:
                if watch:
                    typer.echo("\x1b[2J\x1b[H", nl=False)  # clear the terminal
                typer.echo(render(lags))
            if not watch:
                return
    except asyncpg.UndefinedTableError:
        _fail("the offsets table does not exist: run `weir migrate` first", code=1)
    except KeyboardInterrupt:
        return


@app.command("cdc-contract")
def cdc_contract(
    config: ConfigOption,
    topic: Annotated[str, typer.Option(help="A Debezium change topic (prefix.schema.table).")],
    out: Annotated[Path | None, typer.Option(
        help="Write the contract to this file (default: standard output).")] = None,
) -> None:
    """Write a mirror's contract (JSON Schema) from the schema the newest change event on
    TOPIC carries (the JSON converter with schemas on), with Debezium's types mapped as
    docs/cdc.md shows. Run it again, then `weir migrate`, after a column is added at the
    source. Exit 1 if the topic has no such event."""
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        _fail(str(exc))
    from processor.commands.cdc_contract import NoSchema, contract_for, newest_schema
    try:
        contract = contract_for(_run(newest_schema(settings, topic)), topic)
    except NoSchema as exc:
        _fail(str(exc), code=1)
    text = orjson.dumps(contract, option=orjson.OPT_INDENT_2).decode() + "\n"
    if out is None:
        typer.echo(text, nl=False)
        return
    try:
        out.write_text(text)
    except OSError as exc:
        _fail(f"--out {str(out)!r}: {exc.strerror or exc}")
    typer.echo(f"{out}: {len(contract['properties'])} columns from {topic}", err=True)


@app.command("cdc-mirrors")
def cdc_mirrors(
    config: ConfigOption,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List the change topics the patterns of cdc.mirrors match: each mirror's table, key
    and columns, or why a topic is not mirrored (yet). Changes nothing; `weir run` creates
    and evolves the tables."""
    settings, contracts, _ = _load(config)
    if not settings.cdc.mirrors:
        _fail("cdc.mirrors names no pattern")
    from processor.runtime.mirrors import Mirrors, Plan

    async def find() -> Plan:
        mirrors = Mirrors(settings, contracts)
        return await mirrors.settle(await mirrors.find(), apply=False)
    found = _run(find())
    rows: list[dict[str, Any]] = [
        {"topic": topic, "state": "mirrored", "table": name,
         "key": found.settings.event_types[name].upsert_key,
         "columns": {c.name: c.pg_type for c in found.contracts[name].columns}}
        for topic, name in sorted(found.mirrored.items())]
    rows += [{"topic": topic, "state": kind, "why": why}
             for topic, (kind, why) in sorted(found.unmirrored.items())]
    if as_json:
        typer.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return
    for row in rows:
        if row["state"] == "mirrored":
            typer.echo(f"{row['topic']} -> {row['table']} (key {', '.join(row['key'])}; "
                       f"{len(row['columns'])} columns)")
        else:
            typer.echo(f"{row['topic']}: {row['state']}: {row['why']}")
    if not rows:
        typer.echo("no topic matches")


dlq_app = typer.Typer(help="Look at the dead letters and replay them.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")

TopicFilter = Annotated[str | None, typer.Option(help="Only this source topic.")]
ReasonFilter = Annotated[str | None, typer.Option(
    help="Only this reason (schema_violation, decode_error, rejected_by_table, ...).")]
SinceFilter = Annotated[datetime | None, typer.Option(help="Failed at or after (ISO 8601).")]
UntilFilter = Annotated[datetime | None, typer.Option(help="Failed before (ISO 8601).")]


def _with_conn(settings: Settings, action: Callable[[Any], Awaitable[T]]) -> T:
    from processor.core.connections import connect

    async def go() -> T:
        conn = await connect(settings)
        try:
            return await action(conn)
        finally:
            await conn.close()
    return _run(go())


@dlq_app.command("list")
def dlq_list(
    config: ConfigOption, topic: TopicFilter = None, reason: ReasonFilter = None,
    since: SinceFilter = None, until: UntilFilter = None,
    replayed: Annotated[bool, typer.Option(help="Include replayed ones.")] = False,
    limit: Annotated[int, typer.Option(min=1)] = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The newest dead letters (table, dead-letter topics, local spool), where they came from
    and why."""
    settings, _, _ = _load(config)
    from processor.commands.dlq import (
        in_spool,
        list_dead_letters,
        only_in_spool,
        only_in_topic,
        spool_of,
    )
    from processor.commands.dlq_filters import Filters
    filters = Filters(topic, reason, since, until, replayed)
    spool_path = str(spool_of(settings).path)

    def spooled(entries: list[Any]) -> list[dict[str, Any]]:
        return [{"id": None, "failed_at": e.spooled_at, "topic": e.dead.topic,
                 "partition": e.dead.partition, "offset": e.dead.offset,
                 "reason": e.dead.reason, "stage": e.dead.stage, "error": e.dead.error,
                 "replayed_at": None, "place": "spool", "path": spool_path} for e in entries]

    async def every_place(conn: Any) -> list[dict[str, Any]]:
        table = [{**dict(r), "place": "table"}
                 for r in await list_dead_letters(conn, settings, filters, limit)]
        topic = [{"id": None, "failed_at": d.failed_at, "topic": d.topic,
                  "partition": d.partition, "offset": d.offset, "reason": d.reason,
                  "stage": d.stage, "error": d.error, "replayed_at": None, "place": "topic"}
                 for d in await only_in_topic(conn, settings, filters)]
        spool = spooled(await only_in_spool(conn, settings, filters))
        return sorted(table + topic + spool, key=_newest_first)[:limit]

    away = _postgres_away(lambda: _with_conn(settings, every_place))
    if isinstance(away, Exception):
        # When PostgreSQL is away the spool is where new dead letters go: show it anyway.
        typer.echo(f"weir: PostgreSQL did not answer ({describe(away)}); only "
                   "the spool is listed, not the table or the dead-letter topics", err=True)
        rows = sorted(spooled(_run(in_spool(settings, filters))), key=_newest_first)[:limit]
    else:
        rows = away
    _print_list(rows, as_json, spool_path)
    if isinstance(away, Exception):
        raise typer.Exit(1)  # a partial list: no script may take it for the whole


def _postgres_away(action: Callable[[], T]) -> T | Exception:
    """``action()``, or the error if it failed because PostgreSQL did not answer."""
    try:
        return action()
    except Exception as exc:
        from processor.core.verdict import Verdict, verdict
        if verdict(exc) is not Verdict.RETRY:
            raise
        return exc


def _print_list(rows: list[dict[str, Any]], as_json: bool, spool_path: str) -> None:
    if as_json:
        typer.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return
    for r in rows:
        mark = " (replayed)" if r["replayed_at"] else ""
        at = f"{r['failed_at']:%Y-%m-%d %H:%M:%S}" if r["failed_at"] else "-" * 19
        typer.echo(f"{r['id'] or r['place']:>8}  {at}  "
                   f"{r['topic']}:{r['partition']}@{r['offset']}  {r['reason']}/{r['stage']}"
                   f"{mark}  {r['error'][:100]}")
    spooled = sum(r["place"] == "spool" for r in rows)
    where = f" ({spooled} in the spool {spool_path}, not yet in the table or topic)"
    typer.echo(f"{len(rows)} dead letter(s){where if spooled else ''}")


def _newest_first(row: dict[str, Any]) -> tuple[bool, datetime]:
    # A spool line of an earlier Weir has no time: such lines come last.
    at = row["failed_at"]
    return (at is not None, at or datetime.min.replace(tzinfo=UTC))


@dlq_app.command("show")
def dlq_show(config: ConfigOption, dead_id: Annotated[str, typer.Argument(
        help="The id from `weir dlq list`, or TOPIC:PARTITION@OFFSET of the source event.")],
) -> None:
    """One dead letter, whole: the original key, value and headers, and the error."""
    settings, _, _ = _load(config)
    from processor.commands.dlq import show_dead_letter, show_in_spool, show_in_topic
    coords = re.fullmatch(r"(.+):(\d+)@(\d+)", dead_id)
    if coords is None and not dead_id.isdigit():
        raise _fail(f"{dead_id!r} is neither an id nor TOPIC:PARTITION@OFFSET", code=2)
    if coords is None:
        row: Any = _with_conn(settings, lambda c: show_dead_letter(c, settings, int(dead_id)))
    else:
        where = (coords[1], int(coords[2]), int(coords[3]))
        row = _postgres_away(
            lambda: _with_conn(settings, lambda c: show_dead_letter(c, settings, where)))
        if isinstance(row, Exception):
            typer.echo(f"weir: PostgreSQL did not answer ({describe(row)}); "
                       "looking in the dead-letter topic and the spool only", err=True)
            row = None
        if row is None:
            found = _run(show_in_topic(settings, where))
            row = None if found is None else {"place": "topic", **asdict(found)}
        if row is None:
            row = show_in_spool(settings, where)
    if row is None:
        raise _fail(f"no dead letter {dead_id}", code=1)
    for key, value in row.items():
        typer.echo(f"{key}: {_printable(value) if isinstance(value, bytes) else value}")


def _printable(data: bytes) -> str:
    # Bytes as text where they are, escapes elsewhere: a NUL or an escape sequence in a key
    # must not reach the operator's terminal raw.
    text = data.decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


@dlq_app.command("replay")
def dlq_replay(
    config: ConfigOption, topic: TopicFilter = None, reason: ReasonFilter = None,
    since: SinceFilter = None, until: UntilFilter = None,
    dry_run: Annotated[bool, typer.Option(help="Only count what would be replayed.")] = False,
) -> None:
    """Publish matching dead letters to their source topics again (after a fix)."""
    settings, _, _ = _load(config)
    from processor.commands.dlq import replay
    from processor.commands.dlq_filters import Filters
    filters = Filters(topic, reason, since, until)
    count = _with_conn(settings, lambda c: replay(c, settings, filters, dry_run))
    typer.echo(f"{'would replay' if dry_run else 'replayed'} {count} dead letter(s)")


offsets_app = typer.Typer(help="See and move the group's position (exactly-once safe).",
                          no_args_is_help=True)
app.add_typer(offsets_app, name="offsets")
OffsetTopic = Annotated[str | None, typer.Option("--topic", help="Only this topic.")]
OffsetPartition = Annotated[int | None, typer.Option(
    "--partition", min=0, help="Only this partition (with --topic).")]


def _mirrored(loaded: Loaded) -> Settings:
    """The settings with the mirrors ``cdc.mirrors`` finds now (their topics too), for the
    commands that act on every topic read."""
    settings, contracts, _ = loaded
    if not settings.cdc.mirrors:
        return settings
    from processor.runtime.mirrors import Mirrors
    return _run(Mirrors(settings, contracts).find()).settings


@offsets_app.command("show")
def offsets_show(
    config: ConfigOption, topic: OffsetTopic = None, partition: OffsetPartition = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Per partition: the stored next offset (PostgreSQL, the truth), Kafka's committed
    offset, the log start and end, and when the stored position was written."""
    settings = _mirrored(_load(config))
    from processor.commands.rewind import positions, render_positions
    rows = _run(positions(settings, topic, partition))
    if as_json:
        typer.echo(orjson.dumps([r.as_dict() for r in rows],
                                option=orjson.OPT_INDENT_2).decode())
        return
    typer.echo(render_positions(rows))


@offsets_app.command("rewind")
def offsets_rewind(
    config: ConfigOption,
    to_time: Annotated[datetime | None, typer.Option(
        help="The first offset at or after this time (ISO 8601; no zone = UTC).")] = None,
    to_offset: Annotated[int | None, typer.Option(
        min=0, help="This offset (clamped to the log).")] = None,
    to_earliest: Annotated[bool, typer.Option(help="The log start.")] = False,
    to_latest: Annotated[bool, typer.Option(help="The log end (skip what is there).")] = False,
    topic: OffsetTopic = None, partition: OffsetPartition = None,
    execute: Annotated[bool, typer.Option(
        help="Apply the plan (default: print it and change nothing).")] = False,
) -> None:
    """Move the group's stored offsets (PostgreSQL and Kafka) to a time or an offset; a dry
    run unless --execute, refused while the group has live members."""
    settings = _mirrored(_load(config))
    from processor.commands.rewind import GroupIsLive, Target, apply, plan, render_plan
    chosen = [to_time is not None, to_offset is not None, to_earliest, to_latest]
    if chosen.count(True) != 1:
        _fail("say exactly one of --to-time, --to-offset, --to-earliest, --to-latest")
    if partition is not None and topic is None:
        _fail("--partition needs --topic")
    when = None if to_time is None else to_time if to_time.tzinfo else to_time.replace(
        tzinfo=UTC)
    target = Target(None if when is None else int(when.timestamp() * 1000), to_offset,
                    to_earliest, to_latest)
    moves = _run(plan(settings, target, topic, partition))
    if not moves:
        _fail(f"no partition matches (topics: {[t.name for t in settings.topics]})")
    typer.echo(render_plan(moves))
    if not execute:
        typer.echo(f"dry run: {len(moves)} partition(s) would move; --execute applies it")
        return
    try:
        _run(apply(settings, moves))
    except GroupIsLive as exc:
        _fail(str(exc))  # an expected refusal, like every operator command's: exit 2
    typer.echo(f"moved {len(moves)} partition(s) in PostgreSQL and Kafka; the next "
               "`weir run` resumes there")


docs_app = typer.Typer(help="Generate documentation from the configuration.",
                       no_args_is_help=True)
app.add_typer(docs_app, name="docs")


@docs_app.command("events")
def docs_events(
    config: ConfigOption,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write here instead of standard output.")] = None,
) -> None:
    """Render the producers' contract page (docs/events.md) from the event schemas."""
    settings, contracts, _ = _load(config)
    from processor.commands.contract_docs import render_events
    text = render_events(settings, contracts)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)


@app.command()
def version() -> None:
    """Print Weir's version."""
    typer.echo(__version__)


def main() -> None:
    """Console-script entry point."""
    app()
