"""Shared fixtures: paths of the repository's example config and schemas."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def example_config() -> Path:
    """The example pipeline's config file."""
    return ROOT / "config" / "example.yaml"
