"""The docs name every setting, metric and command that exists (and the README the two commands)."""

from pathlib import Path

from prometheus_client import REGISTRY
from pydantic import BaseModel

from processor import metrics  # noqa: F401 - registers Weir's metrics
from processor.cli import app
from processor.settings import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs"
README = Path(__file__).resolve().parents[2] / "README.md"


def setting_names() -> list[str]:
    names = []
    for name, field in Settings.model_fields.items():
        model = field.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            names += [f"{name}.{sub}" for sub in model.model_fields]
        else:
            names.append(name)
    return names


def test_every_setting_is_documented() -> None:
    text = (DOCS / "configuration.md").read_text()
    missing = [n for n in setting_names() if f"`{n}" not in text]
    assert not missing


def test_every_metric_is_documented() -> None:
    text = (DOCS / "metrics.md").read_text()
    weir = {m.name for m in REGISTRY.collect() if m.name.startswith("weir_")}
    assert weir
    missing = sorted(n for n in weir if f"`{n}" not in text)
    assert not missing


def test_every_command_is_documented() -> None:
    text = (DOCS / "cli.md").read_text()
    commands = [c.name or (c.callback.__name__ if c.callback else "") for c in
                app.registered_commands]
    missing = [c for c in commands if f"`weir {c}" not in text]
    assert not missing


def test_readme_opens_with_the_two_commands() -> None:
    head = README.read_text()[:1500]
    assert "make demo" in head
    assert "make test" in head


def test_events_md_is_generated_from_the_schemas(example_config: Path) -> None:
    from processor.contract_docs import render_events
    from processor.contracts import load_contracts
    from processor.settings import load_settings

    settings = load_settings(example_config)
    expected = render_events(settings, load_contracts(settings))
    assert (DOCS / "events.md").read_text() == expected, (
        "docs/events.md is stale: run `weir docs events -c config/example.yaml -o docs/events.md`"
    )
