"""The collector's public names are exported and documented (ruff keeps ``__all__`` sorted)."""

from __future__ import annotations

import importlib

import pytest

MODULES = ["tracardi_tracker.collector", "tracardi_tracker.testing", "tracardi_tracker.cli"]


@pytest.mark.parametrize("name", MODULES)
def test_every_exported_name_exists_once(name: str) -> None:
    module = importlib.import_module(name)

    exported = list(module.__all__)
    missing = [n for n in exported if not hasattr(module, n)]

    expected = ([], len(exported))
    assert expected == (missing, len(set(exported)))


def test_collector_exports_what_its_modules_make_public() -> None:
    module = importlib.import_module("tracardi_tracker.collector")
    public_classes = {
        "BadRequest", "Collector", "CollectorConfig", "CollectorConfigError", "CollectorError",
        "CollectorStartError", "CollectorTimeoutError", "Faults", "ProfileRecord",
        "SessionRecord", "StoredEvent", "TracardiVersion",
    }  # fmt: skip

    assert public_classes <= set(module.__all__)


@pytest.mark.parametrize("name", MODULES)
def test_every_public_name_has_a_docstring(name: str) -> None:
    module = importlib.import_module(name)
    public = [getattr(module, n) for n in module.__all__]

    undocumented = [
        obj.__name__ for obj in public if callable(obj) and not (obj.__doc__ or "").strip()
    ]

    assert undocumented == []
