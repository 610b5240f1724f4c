"""The results of one run: the JSON file, the ratios and targets, a Markdown table, a chart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TARGETS = {
    # Weir ≥ 0.8 x min(consume ceiling, write ceiling), both at its own parallelism
    "weir_vs_ceiling": 0.8,
    # At equal parallelism, 1 v 1 and N v N (the lower of the two is judged):
    "weir_vs_peer": 3.0,     # Weir ≥ 3 x Quix Streams (N instances in one group)
    "weir_vs_connect": 2.0,  # Weir ≥ 2 x Kafka Connect + the Debezium JDBC sink (tasks.max N)
    "cpu_s_per_million": 12.0,  # Weir's CPU (user + sys) per million events, its best row
    "p99_half_load_ms": 250.0,
    "p99_slow_margin_ms": 100.0,  # at 100 events/s: p99 ≤ linger + 100 ms
    "peak_rss_mb": 200.0,    # each Weir process (one per worker, and the supervisor)
    "avro_cpu_vs_json": 1.2,  # Weir's CPU per event from Avro ≤ 1.2 x from JSON (same workers)
    # Rich orders with the example's mapped columns ≤ 1.3 x the plain example's CPU per event
    # (same workers); with their line items as child rows too, reported beside it
    "mapped_cpu_vs_example": 1.3,
}


def ratios(figures: dict[str, Any]) -> dict[str, float | None]:
    """Weir / min(ceilings) and Weir / each peer, from the events/s figures (None: missing).

    ``weir_vs_peer`` is Quix Streams (the key older results files have too). A run with the
    Avro rows adds ``avro_cpu_vs_json`` (Weir's CPU per event from Avro over its CPU per
    event from JSON with the same worker count) and, when Quix Streams read the Avro topics
    too, ``weir_avro_vs_peer_avro``; runs without them (``--no-avro``, older files) have
    neither key.
    """
    weir = figures.get("weir_events_per_s")
    ceilings = [v for v in (figures.get("consume_ceiling_events_per_s"),
                            figures.get("write_ceiling_events_per_s")) if v]

    def over(key: str) -> float | None:
        other = figures.get(key)
        return round(weir / other, 2) if weir and other else None

    out: dict[str, float | None] = {
        "weir_vs_ceiling": round(weir / min(ceilings), 3) if weir and ceilings else None,
        "weir_vs_peer": over("peer_events_per_s"),
        "weir_vs_connect": over("connect_events_per_s"),
    }
    if figures.get("matched"):
        # At equal parallelism: the lower of the rounds that are not partial.
        by_workers = ratios_by_workers(figures)
        for key, system in (("weir_vs_peer", "quix"), ("weir_vs_connect", "connect")):
            judged = [v for r in by_workers.values() if (v := r[system]) is not None]
            out[key] = min(judged) if judged else None
    if "weir_avro_cpu_s_per_million" in figures:
        avro, json_ = figures["weir_avro_cpu_s_per_million"], json_cpu_per_million(figures)
        out["avro_cpu_vs_json"] = round(avro / json_, 3) if avro and json_ else None
        weir_avro, peer_avro = (figures.get("weir_avro_events_per_s"),
                                figures.get("peer_avro_events_per_s"))
        if peer_avro is not None:
            out["weir_avro_vs_peer_avro"] = (round(weir_avro / peer_avro, 2)
                                             if weir_avro and peer_avro else None)
    plain = json_cpu_per_million(figures, figures.get("weir_mapped_workers"))
    for key, ratio in (("weir_mapped", "mapped_cpu_vs_example"),
                       ("weir_children", "children_cpu_vs_example")):
        if f"{key}_cpu_s_per_million" in figures:
            cost = figures[f"{key}_cpu_s_per_million"]
            out[ratio] = round(cost / plain, 3) if cost and plain else None
    return out


def ratios_by_workers(figures: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """Per parallelism N of the rounds (``matched``): Weir with N workers over Quix Streams
    with N instances, over Kafka Connect with ``tasks.max`` N, and over the lower ceiling
    measured at N; None where one is missing or its run was partial."""
    out: dict[str, dict[str, float | None]] = {}
    for n, m in (figures.get("matched") or {}).items():
        weir = (m.get("weir") or {}).get("events_per_s")
        row: dict[str, float | None] = {}
        for system in ("quix", "connect"):
            other = m.get(system) or {}
            rate = other.get("events_per_s")
            row[system] = round(weir / rate, 2) if weir and rate and not other.get(
                "partial") else None
        ceiling = (figures.get("ceilings_by_workers") or {}).get(n) or {}
        bounds = [v for v in (ceiling.get("consume_events_per_s"),
                              ceiling.get("write_events_per_s")) if v]
        row["ceiling"] = round(weir / min(bounds), 3) if weir and bounds else None
        out[n] = row
    return out


def json_cpu_per_million(figures: dict[str, Any], workers: int | None = None
                         ) -> float | None:
    """Weir's CPU s per million events from JSON with ``workers`` (default: the Avro run's
    worker count)."""
    if workers is None:
        workers = figures.get("weir_avro_workers", figures.get("weir_workers"))
    same = (figures.get("weir_by_workers") or {}).get(str(workers)) or {}
    if same.get("cpu_s_per_million"):
        return float(same["cpu_s_per_million"])
    if workers == figures.get("weir_workers"):
        return figures.get("weir_cpu_s_per_million")
    return None


def targets(figures: dict[str, Any], linger_ms: float) -> dict[str, bool | None]:
    """Which targets this run met (None: not measured).

    A peer run marked partial (its rows are not Weir's) is never judged. The Avro target
    is there only for a run with the Avro rows (as its ratio, see :func:`ratios`).
    """
    r = ratios(figures)
    half = (figures.get("latency_half_load") or {}).get("p99")
    slow = (figures.get("latency_100_per_s") or {}).get("p99")
    rss = figures.get("weir_largest_process_rss_mb", figures.get("weir_peak_rss_mb"))

    def at_least(v: float | None, bound: float) -> bool | None:
        return None if v is None else v >= bound

    def at_most(v: float | None, bound: float) -> bool | None:
        return None if v is None else v <= bound

    met = {
        "weir_vs_ceiling": at_least(r["weir_vs_ceiling"], TARGETS["weir_vs_ceiling"]),
        # With the rounds, the ratio already leaves partial runs out.
        "weir_vs_peer": None if figures.get("peer_partial") and not figures.get("matched")
        else at_least(r["weir_vs_peer"], TARGETS["weir_vs_peer"]),
        "weir_vs_connect": at_least(r.get("weir_vs_connect"), TARGETS["weir_vs_connect"]),
        "cpu_s_per_million": at_most(figures.get("weir_cpu_s_per_million"),
                                     TARGETS["cpu_s_per_million"]),
        "p99_half_load": at_most(half, TARGETS["p99_half_load_ms"]),
        "p99_100_per_s": at_most(slow, linger_ms + TARGETS["p99_slow_margin_ms"]),
        "peak_rss": at_most(rss, TARGETS["peak_rss_mb"]),
    }
    for key in ("avro_cpu_vs_json", "mapped_cpu_vs_example"):
        if key in r:
            met[key] = at_most(r[key], TARGETS[key])
    return met


def result_name(date: str, sha: str) -> str:
    """``<date>-<git sha>``: the stem of a run's files."""
    return f"{date}-{sha}"


def write_results(folder: Path, stem: str, results: dict[str, Any]) -> Path:
    """Write ``<stem>.json``; return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.json"
    path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return path


def read_results(path: Path) -> dict[str, Any]:
    """A results file, as written by :func:`write_results`."""
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _rate(v: float | None) -> str:
    return "—" if v is None else f"{v:,.0f}"


def _ms(lat: dict[str, Any] | None, key: str) -> str:
    v = (lat or {}).get(key)
    return "—" if v is None else f"{v:,.0f}"


def _producer_clock(half: dict[str, Any], slow: dict[str, Any]) -> list[str]:
    """The same latencies from the events' own time, when the run measured them."""
    h, s = half.get("from_producer"), slow.get("from_producer")
    if not h and not s:
        return []
    return [
        "The Kafka timestamp is the broker's append time (the latency topics are "
        "`message.timestamp.type=LogAppendTime`). From the events' own time instead (the "
        "producer's clock when it made them, which adds `weir produce`'s send delay on "
        f"these shared cores): at half load p50 / p95 / p99 {_ms(h, 'p50')} / "
        f"{_ms(h, 'p95')} / {_ms(h, 'p99')} ms, at 100 events/s {_ms(s, 'p50')} / "
        f"{_ms(s, 'p95')} / {_ms(s, 'p99')} ms.",
        "",
    ]


def markdown(results: dict[str, Any]) -> str:
    """The table README and the results folder show."""
    f = results["figures"]
    r = results["ratios"]
    t = results["targets"]
    load = results.get("load_average", {})
    workers = f.get("weir_workers", 1)
    weir_load = load.get(f"weir_workers_{workers}", load.get("weir", {}))

    def mark(key: str) -> str:
        return {True: "met", False: "missed", None: "not measured"}[t.get(key)]

    def peer_mark(prefix: str, key: str) -> str:
        return "partial: not judged" if f.get(f"{prefix}_partial") else mark(key)

    def cost(prefix: str) -> str:
        return (f"{_num(f.get(f'{prefix}_cpu_s_per_million'))} | "
                f"{_num(f.get(f'{prefix}_peak_rss_mb'))} |")

    half = f.get("latency_half_load") or {}
    slow = f.get("latency_100_per_s") or {}
    connect = f.get("connect_version") or {}
    lines = [
        f"Run `{results['name']}`: {results['events']:,} events, "
        f"{results['settings']['partitions']} partitions, {results['machine']['cpus']} CPUs; "
        f"1-minute load before/after the Weir run: "
        f"{weir_load.get('before', ['?'])[0]} / {weir_load.get('after', ['?'])[0]}.",
        "",
        "| measure | events/s | ratio | target | CPU s per million events | peak RSS MB |",
        "|---|---:|---:|---|---:|---:|",
        f"| consume ceiling (bare aiokafka, discard) | "
        f"{_rate(f.get('consume_ceiling_events_per_s'))} | | | | |",
        f"| write ceiling (asyncpg COPY + upsert, rows pre-built) | "
        f"{_rate(f.get('write_ceiling_events_per_s'))} | | | | |",
        f"| **Weir** (`weir run --until-caught-up --workers {workers}`) | "
        f"**{_rate(f.get('weir_events_per_s'))}** | "
        f"{_ratio(r.get('weir_vs_ceiling'))} of min ceiling | ≥ 0.8: {mark('weir_vs_ceiling')} "
        f"| {cost('weir')}",
        f"| {_name('Quix Streams', f.get('peer_version'))} PostgreSQL sink"
        f"{_times(f, 'peer_instances', 'instance')} | {_rate(f.get('peer_events_per_s'))} | "
        f"Weir is {_ratio(r.get('weir_vs_peer'))} x{_lower(f)} | "
        f"≥ 3x: {peer_mark('peer', 'weir_vs_peer')} | {cost('peer')}",
        f"| {_name('Kafka Connect', connect.get('connect'))} + "
        f"{_name('Debezium JDBC sink', connect.get('debezium'))}"
        f"{_times(f, 'connect_tasks', 'task')} | {_rate(f.get('connect_events_per_s'))} | "
        f"Weir is {_ratio(r.get('weir_vs_connect'))} x{_lower(f)} | "
        f"≥ 2x: {mark('weir_vs_connect')} | {cost('connect')}",
        f"| **Weir, Avro** (same events, `--workers {f.get('weir_avro_workers', workers)}`) | "
        f"**{_rate(f.get('weir_avro_events_per_s'))}** | CPU per event "
        f"{_ratio(r.get('avro_cpu_vs_json'))} x JSON's | ≤ 1.2x: {mark('avro_cpu_vs_json')} | "
        f"{cost('weir_avro')}",
        f"| {_name('Quix Streams', f.get('peer_avro_version'))} PostgreSQL sink, Avro "
        f"(AvroDeserializer + Schema Registry) | {_rate(f.get('peer_avro_events_per_s'))} | "
        f"{_peer_avro_ratio(f, r)} | | {cost('peer_avro')}",
        f"| **Weir, mapped** (rich orders, five mapped columns, "
        f"`--workers {f.get('weir_mapped_workers', workers)}`) | "
        f"**{_rate(f.get('weir_mapped_events_per_s'))}** | CPU per event "
        f"{_ratio(r.get('mapped_cpu_vs_example'))} x the plain example's | ≤ 1.3x: "
        f"{mark('mapped_cpu_vs_example')} | {cost('weir_mapped')}",
        f"| Weir, mapped + line items as child rows (same events) | "
        f"{_rate(f.get('weir_children_events_per_s'))} | CPU per event "
        f"{_ratio(r.get('children_cpu_vs_example'))} x the plain example's | | "
        f"{cost('weir_children')}",
        "",
        "| latency, Kafka timestamp → PostgreSQL commit | offered ev/s | p50 ms | p95 ms "
        "| p99 ms | target |",
        "|---|---:|---:|---:|---:|---|",
        f"| 50 % of Weir's max | {_rate(half.get('offered_per_s'))} | {_ms(half, 'p50')} | "
        f"{_ms(half, 'p95')} | {_ms(half, 'p99')} | p99 ≤ 250: {mark('p99_half_load')} |",
        f"| 100 events/s | {_rate(slow.get('offered_per_s'))} | {_ms(slow, 'p50')} | "
        f"{_ms(slow, 'p95')} | {_ms(slow, 'p99')} | p99 ≤ linger + 100: "
        f"{mark('p99_100_per_s')} |",
        "",
        *_producer_clock(half, slow),
        f"Cost of the Weir run ({_workers(workers)}): "
        f"{_num(f.get('weir_cpu_s_per_million'))} CPU seconds per million events (user + sys; "
        f"≤ 12: {mark('cpu_s_per_million')}), "
        f"peak RSS {_num(f.get('weir_peak_rss_mb'))} MB{_largest(f)} "
        f"(≤ 200 per process: {mark('peak_rss')}).",
    ]
    lines += _matched_table(f)
    if f.get("weir_by_workers") and not f.get("matched"):
        lines.append("Weir by worker count: " + ", ".join(
            f"{n}: {_rate(w.get('events_per_s'))} events/s"
            for n, w in sorted(f["weir_by_workers"].items(), key=lambda kv: int(kv[0]))) + ".")
    if f.get("weir_avro_cpu_s_per_million") is not None:
        lines.append(
            f"Avro against JSON, the same {f.get('avro_copied_records', results['events']):,} "
            f"events, {_workers(f.get('weir_avro_workers', workers))}: Weir used "
            f"{_num(f.get('weir_avro_cpu_s_per_million'))} CPU seconds per million events "
            f"from Avro against {_num(json_cpu_per_million(f))} from JSON, "
            f"{_ratio(r.get('avro_cpu_vs_json'))} x (≤ 1.2: {mark('avro_cpu_vs_json')}); "
            f"{_rate(f.get('weir_avro_events_per_s'))} against "
            f"{_rate(_json_rate(f))} events/s; its largest process peaked at "
            f"{_num(f.get('weir_avro_largest_process_rss_mb'))} MB; "
            f"{f.get('avro_bytes_per_event', '?')} bytes per event against "
            f"{f.get('avro_json_bytes_per_event', '?')}.")
    if f.get("weir_mapped_cpu_s_per_million") is not None:
        lines.append(
            f"The example as it ships, {_workers(f.get('weir_mapped_workers', workers))}: "
            f"rich orders (a shipping address, tags, an epoch time, a tenant header) with "
            f"five mapped columns: Weir used {_num(f.get('weir_mapped_cpu_s_per_million'))} "
            f"CPU seconds per million events against "
            f"{_num(json_cpu_per_million(f, f.get('weir_mapped_workers')))} for the plain "
            f"example, {_ratio(r.get('mapped_cpu_vs_example'))} x (≤ 1.3: "
            f"{mark('mapped_cpu_vs_example')}); with their line items as "
            f"{f.get('weir_children_child_rows', 0):,} child rows too, "
            f"{_num(f.get('weir_children_cpu_s_per_million'))}, "
            f"{_ratio(r.get('children_cpu_vs_example'))} x.")
    if f.get("connect_envelope_bytes_per_event"):
        lines.append(
            f"Kafka Connect reads the same events with their schema in every message: "
            f"{f['connect_envelope_bytes_per_event']:,} bytes per event against "
            f"{f.get('connect_source_bytes_per_event', 0):,} for Weir and Quix "
            f"({f.get('connect_tasks', '?')} tasks, batch.size "
            f"{f.get('connect_batch_size', '?')}).")
    lines += [f"Note: {note}" for note in results.get("notes") or []]
    return "\n".join(lines) + "\n"


def _times(f: dict[str, Any], key: str, what: str) -> str:
    n = f.get(key)
    return f", {n} {what}{'' if n == 1 else 's'}" if n else ""


def _lower(f: dict[str, Any]) -> str:
    return " (the lower at equal parallelism)" if f.get("matched") else ""


def _matched_table(f: dict[str, Any]) -> list[str]:
    """The rounds at equal parallelism: each system's rate and CPU, and the ratios."""
    matched = f.get("matched")
    if not matched:
        return []
    ratios = ratios_by_workers(f)
    ceilings = f.get("ceilings_by_workers") or {}

    def rate(m: dict[str, Any], system: str) -> str:
        s = m.get(system)
        if not s:
            return "— | —"
        partial = " (partial)" if s.get("partial") else ""
        return f"{_rate(s.get('events_per_s'))}{partial} | {_num(s.get('cpu_s_per_million'))}"

    lines = ["", "At equal parallelism (N: Weir's workers, Quix Streams' instances in one group, "
             "Kafka Connect's tasks.max; the ceilings with N consumer processes and N x lanes "
             "connections), in the order run:", "",
             "| N | order | consume / write ceiling ev/s | Weir ev/s | CPU s/M | Quix ev/s | "
             "CPU s/M | Kafka Connect ev/s | CPU s/M | Weir / ceiling | Weir / Quix | "
             "Weir / Connect |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    orders = f.get("rounds_order") or []
    for i, (n, m) in enumerate(sorted(matched.items(), key=lambda kv: int(kv[0]))):
        c, r = ceilings.get(n) or {}, ratios.get(n) or {}
        order = " → ".join(orders[i]) if i < len(orders) else ""
        lines.append(
            f"| {n} | {order} | {_rate(c.get('consume_events_per_s'))} / "
            f"{_rate(c.get('write_events_per_s'))} | {rate(m, 'weir')} | {rate(m, 'quix')} | "
            f"{rate(m, 'connect')} | {_ratio(r.get('ceiling'))} | {_ratio(r.get('quix'))} | "
            f"{_ratio(r.get('connect'))} |")
    lines += ["", "Quix Streams' sink writes a table of its own shape: unpartitioned, keyed "
              "by event_id, no raw column, no rollup, no index beyond its key, no validation "
              "of the events, and None written as an empty string (its column typing cannot "
              "type a None); Kafka Connect's tables are Weir's shape without raw "
              "(benchmarks/connect/tables.sql). Weir does all of that in its figures."]
    return lines


def _peer_avro_ratio(f: dict[str, Any], r: dict[str, Any]) -> str:
    if f.get("peer_avro_partial"):
        return (f"partial: {f.get('peer_avro_rows', 0):,} of {f.get('weir_avro_rows', 0):,} "
                "rows, not judged")
    return f"Weir Avro is {_ratio(r.get('weir_avro_vs_peer_avro'))} x"


def _json_rate(f: dict[str, Any]) -> float | None:
    workers = f.get("weir_avro_workers", f.get("weir_workers"))
    same = (f.get("weir_by_workers") or {}).get(str(workers)) or {}
    return same.get("events_per_s", f.get("weir_events_per_s"))


def _largest(f: dict[str, Any]) -> str:
    processes = f.get("weir_processes", 1)
    if processes <= 1:
        return ""
    return (f" over its {processes} processes, the largest "
            f"{_num(f.get('weir_largest_process_rss_mb'))} MB")


def _name(product: str, version: str | None) -> str:
    return f"{product} {version}" if version else product


def _workers(n: int) -> str:
    return f"{n} worker{'' if n == 1 else 's'}"


def _ratio(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}"


def _num(v: float | None) -> str:
    return "—" if v is None else f"{v:,.1f}"


def chart(results: dict[str, Any], path: Path) -> None:
    """Throughput bars and latency percentiles, side by side, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f = results["figures"]
    avro = f.get("weir_avro_events_per_s") is not None
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.2) if avro else (11, 4.2),
                                      gridspec_kw={"width_ratios": [1.6 if avro else 1, 1]})
    bars = {"consume\nceiling": f.get("consume_ceiling_events_per_s"),
            "write\nceiling": f.get("write_ceiling_events_per_s"),
            f"Weir\n{_workers(f.get('weir_workers', 1))}": f.get("weir_events_per_s"),
            "Quix Streams\nPostgreSQL sink": f.get("peer_events_per_s"),
            "Kafka Connect\nDebezium JDBC": f.get("connect_events_per_s")}
    colors = ["#9aa", "#9aa", "#2a6", "#c74", "#b8a"]
    if avro:
        bars |= {"Weir\nAvro": f.get("weir_avro_events_per_s"),
                 "Quix Streams\nAvro": f.get("peer_avro_events_per_s")}
        colors += ["#6c9", "#e9a"]
    names = list(bars)
    values = [bars[n] or 0 for n in names]
    drawn = left.bar(names, values, color=colors)
    left.bar_label(drawn, labels=[_rate(bars[n]) for n in names], fontsize=8)
    left.tick_params(axis="x", labelsize=8)
    left.set_ylabel("events / s")
    left.set_title(f"Throughput, {results['events']:,} events")
    series = {"50 % of max": f.get("latency_half_load") or {},
              "100 ev/s": f.get("latency_100_per_s") or {}}
    xs = ["p50", "p95", "p99"]
    width = 0.38
    for i, (label, lat) in enumerate(series.items()):
        ys = [lat.get(x) or 0 for x in xs]
        pos = [j + (i - 0.5) * width for j in range(len(xs))]
        right.bar_label(right.bar(pos, ys, width, label=label), fmt="%.0f", fontsize=8)
    right.set_xticks(range(len(xs)), xs)
    right.set_ylabel("ms, Kafka timestamp → commit")
    right.set_title("End-to-end latency")
    right.legend()
    fig.suptitle(f"Weir benchmark {results['name']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
