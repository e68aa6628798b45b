"""The pytest plugin, used the way an integrator's suite uses it (in a separate pytest run)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import tracardi_tracker

ROOT = Path(tracardi_tracker.__file__).resolve().parents[1]

SUITE = """
import pytest
import requests


def _post(collector, type_, source="s"):
    body = {"source": {"id": source}, "events": [{"type": type_}]}
    return requests.post(
        collector.track_url, json=body, headers={"User-Agent": "suite/1.0"}, timeout=5
    )


def test_first_stores_an_event(tracardi_collector):
    assert _post(tracardi_collector, "one").status_code == 200
    assert [e.type for e in tracardi_collector.wait_for(1, timeout=5)] == ["one"]


def test_next_test_starts_empty_and_without_faults(tracardi_collector):
    tracardi_collector.fail_next(5)
    assert tracardi_collector.events() == []


def test_faults_of_the_previous_test_are_gone(tracardi_collector):
    assert _post(tracardi_collector, "two").status_code == 200


@pytest.mark.tracardi_collector(tracardi_version="1.0", sources=["only"])
def test_marker_gives_a_collector_of_its_own(tracardi_collector):
    assert _post(tracardi_collector, "x").status_code == 406
    assert tracardi_collector.version.name == "1.0"


def test_factory_builds_more(tracardi_collector_factory):
    old = tracardi_collector_factory(tracardi_version="0.8", sources=["only"])
    assert _post(old, "x").status_code == 401
"""


def test_fixture_serves_an_integrators_suite(tmp_path: Path) -> None:
    (tmp_path / "test_suite.py").write_text(textwrap.dedent(SUITE))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
    }
    command = [sys.executable, "-m", "pytest", "-p", "tracardi_tracker.pytest_plugin",
               "--strict-markers", "-p", "no:cacheprovider", "-q", "test_suite.py"]  # fmt: skip

    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False
    )

    expected = (0, True)
    assert expected == (result.returncode, "5 passed" in result.stdout), result.stdout


def test_importing_the_plugin_starts_nothing() -> None:
    code = (
        "import sys, threading; import tracardi_tracker.pytest_plugin; "
        "print(threading.active_count(), 'tracardi_tracker.collector' in sys.modules)"
    )

    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )

    assert result.stdout.split() == ["1", "False"]
