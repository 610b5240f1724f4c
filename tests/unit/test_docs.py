"""The docs name every setting, metric and command that exists (and the README the two commands)."""

from pathlib import Path

from prometheus_client import REGISTRY
from pydantic import BaseModel

from processor.cli import app
from processor.core import metrics  # noqa: F401 - registers Weir's metrics
from processor.core.settings import Settings

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
    from processor.commands.contract_docs import render_events
    from processor.contracts import load_contracts
    from processor.core.settings import load_settings

    settings = load_settings(example_config)
    expected = render_events(settings, load_contracts(settings))
    assert (DOCS / "events.md").read_text() == expected, (
        "docs/events.md is stale: run `weir docs events -c config/example.yaml -o docs/events.md`"
    )


PACKAGE = DOCS.parent / "processor"


def _layout_rows() -> list[str]:
    text = (DOCS / "architecture.md").read_text()
    section = text.split("## Package layout", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| `")]


def named_modules() -> set[str]:
    """Every module the package table names: ``a/b.py``, and ``c.py`` after it means
    ``a/c.py``."""
    import re

    named: set[str] = set()
    for row in _layout_rows():
        folder = ""
        for path in re.findall(r"`([^`]+)`", row.split("|")[1]):
            if "/" in path:
                folder = path.rsplit("/", 1)[0]
                named.add(path)
            else:
                named.add(f"{folder}/{path}")
    return named


def test_the_package_table_names_every_module_and_nothing_else() -> None:
    exists = {str(p.relative_to(DOCS.parent)) for p in PACKAGE.rglob("*.py")
              if p.name not in ("__init__.py", "__main__.py")}
    named = named_modules()
    assert named, "no package table found"
    assert sorted(exists - named) == [], "modules missing from docs/architecture.md"
    assert sorted(named - exists) == [], "docs/architecture.md names modules that do not exist"


def _slug(heading: str) -> str:
    # GitHub's anchors: lower case, punctuation dropped (hyphens kept), spaces to hyphens.
    import re

    text = heading.strip().lower().replace("`", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    return {_slug(line.lstrip("#")) for line in page.read_text().splitlines()
            if line.startswith("#")}


def test_every_link_between_the_docs_resolves() -> None:
    import re

    broken = []
    for page in [README, *sorted(DOCS.glob("*.md"))]:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue  # a web address
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert broken == []
