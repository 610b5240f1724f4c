"""How fast can an event be validated against its contract? fastjsonschema against jsonschema.

The decode stage validates every event, so the validator's cost per event bounds the
throughput of a core. This measures both libraries on the example events (the sample
producer's orders and page views, the same schemas as `config/example.yaml`), each
compiled once as Weir does, with format checks on (uuid, date-time) in both. jsonschema is
imported here only; Weir itself depends on fastjsonschema alone. jsonschema comes with the
dev extra (through check-jsonschema).

    .venv/bin/python -m benchmarks.validation [--events 20000] [--repeat 5]

Writes benchmarks/results/validation.json and validation.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import fastjsonschema
import jsonschema
import orjson

from processor.commands.produce.sample import SampleEvents

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = {"order": ROOT / "schemas/order.v1.json",
           "page_view": ROOT / "schemas/page_view.v1.json"}
RESULTS = ROOT / "benchmarks" / "results"


def compilers() -> dict[str, Callable[[dict[str, Any]], Callable[[Any], Any]]]:
    """Each library's way to turn a schema into a reusable validate(event) callable."""
    def with_jsonschema(schema: dict[str, Any]) -> Callable[[Any], Any]:
        cls = jsonschema.validators.validator_for(schema)
        validate: Callable[[Any], Any] = cls(schema, format_checker=cls.FORMAT_CHECKER).validate
        return validate

    return {"fastjsonschema": fastjsonschema.compile, "jsonschema": with_jsonschema}


def best_of(repeat: int, run: Callable[[], None]) -> float:
    """The fastest of ``repeat`` runs, in seconds: the least disturbed by other load."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def measure(events: int, repeat: int) -> dict[str, Any]:
    """Compile time and validation cost per event, per library and event type."""
    sample = SampleEvents(seed=7)
    data = {name: [sample.make(name)[1] for _ in range(events)] for name in SCHEMAS}
    figures: dict[str, Any] = {}
    for lib, compile_schema in compilers().items():
        for name, path in SCHEMAS.items():
            schema = orjson.loads(path.read_bytes())
            compile_s = best_of(repeat, lambda c=compile_schema, s=schema: c(s))  # type: ignore[misc]
            validate = compile_schema(schema)
            batch = data[name]

            def run(validate: Callable[[Any], Any] = validate,
                    batch: list[dict[str, Any]] = batch) -> None:
                for event in batch:
                    validate(event)

            seconds = best_of(repeat, run)
            figures[f"{lib}/{name}"] = {
                "library": lib, "event_type": name, "events": len(batch),
                "compile_ms": round(compile_s * 1000, 2),
                "us_per_event": round(seconds / len(batch) * 1e6, 2),
                "events_per_s": round(len(batch) / seconds),
            }
    return figures


def write(figures: dict[str, Any], events: int, repeat: int) -> None:
    """The JSON for tools, the Markdown table for people."""
    meta = {"python": platform.python_version(), "machine": platform.machine(),
            "fastjsonschema": version("fastjsonschema"), "jsonschema": version("jsonschema"),
            "events": events, "repeat": repeat, "date": time.strftime("%Y-%m-%d")}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "validation.json").write_text(
        json.dumps({"meta": meta, "figures": figures}, indent=2) + "\n")
    lines = [
        "# Validation: fastjsonschema against jsonschema",
        "",
        f"{meta['date']}, Python {meta['python']} ({meta['machine']}), fastjsonschema "
        f"{meta['fastjsonschema']}, jsonschema {meta['jsonschema']}; {events} sample events "
        f"per type, best of {repeat}, one core. Produced by `benchmarks/validation.py`. "
        "jsonschema builds its validator lazily, so its compile time is paid on the first "
        "event instead.",
        "",
        "| library | event type | compile (ms) | µs per event | events/s per core |",
        "|---|---|---:|---:|---:|",
    ]
    lines += [f"| {f['library']} | {f['event_type']} | {f['compile_ms']} | "
              f"{f['us_per_event']} | {f['events_per_s']:,} |" for f in figures.values()]
    (RESULTS / "validation.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    """Measure and write the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    figures = measure(args.events, args.repeat)
    write(figures, args.events, args.repeat)
    print((RESULTS / "validation.md").read_text())


if __name__ == "__main__":
    main()
