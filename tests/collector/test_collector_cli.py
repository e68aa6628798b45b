"""The command line: ``collector``, ``events`` and ``demo``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import requests
from collector_helpers import event, payload, send

import tracardi_tracker
from tracardi_tracker._version import __version__
from tracardi_tracker.cli import DEMO_SOURCE_ID, main
from tracardi_tracker.collector import Collector

ROOT = Path(tracardi_tracker.__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def test_version_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])

    expected = (0, f"tracardi-tracker {__version__}\n")
    assert expected == (exited.value.code, capsys.readouterr().out)


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    code = main([])

    expected = (2, True)
    assert expected == (code, "collector" in capsys.readouterr().err)


def test_collector_runs_until_interrupted_and_keeps_events(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    command = [sys.executable, "-m", "tracardi_tracker", "collector", "--port", "0",
               "--db", str(db), "--source", "site"]  # fmt: skip
    with subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None
        banner = process.stdout.readline()
        url = banner.split(" listening on ")[1].split()[0]

        response = requests.post(
            url + "/track",
            json={"source": {"id": "site"}, "events": [{"type": "page-view"}]},
            headers={"User-Agent": "cli-test/1.0"},
            timeout=5,
        )
        process.send_signal(signal.SIGINT)
        rest = process.stdout.read()
        code = process.wait(timeout=10)

    expected = (True, 200, 0, True)
    actual = (
        banner.startswith("Tracardi collector listening on http://127.0.0.1:")
        and "loopback only" in banner,
        response.status_code,
        code,
        f"Collector stopped: 1 events stored, 0 requests rejected (in {db})." in rest,
    )
    assert expected == actual, rest


def test_collector_refuses_a_remote_address_without_consent(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["collector", "--host", "0.0.0.0", "--db", ":memory:"])

    expected = (2, True)
    assert expected == (code, "--allow-remote" in capsys.readouterr().err)


def _fill(collector: Collector) -> None:
    send(collector, payload(event("Page View", properties={"title": "Home"}), profile={"id": "p"}))
    send(collector, payload(event("click", properties={"x": 1}), session={"id": "s2"}))


def test_events_prints_a_table_from_a_database_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "events.db"
    with Collector(db=str(db), tracardi_version="0.9") as collector:
        _fill(collector)

    code = main(["events", "--db", str(db)])

    lines = capsys.readouterr().out.splitlines()
    expected = (0, ["TIME", "TYPE", "PROFILE", "SESSION", "PROPERTIES"], "2 events")
    assert expected == (code, lines[0].split(), lines[-1])
    first_row = ["page-view", "p", "5d7c1a7e", '{"title":', '"Home"}']
    assert first_row == lines[1].split()[2:]


def test_events_filters_and_prints_json_from_a_running_collector(
    tracardi_collector: Collector, capsys: pytest.CaptureFixture[str]
) -> None:
    _fill(tracardi_collector)

    code = main(["events", "--url", tracardi_collector.url, "--type", "click", "--json"])

    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    expected = (0, [("click", "s2", {"x": 1})])
    assert expected == (
        code,
        [(r["type"], r["session_id"], r["event"]["properties"]) for r in rows],
    )


def test_events_lists_rejected_requests_on_demand(
    tracardi_collector: Collector, capsys: pytest.CaptureFixture[str]
) -> None:
    send(tracardi_collector, payload(event(id=5)))

    main(["events", "--url", tracardi_collector.url, "--bad"])

    out = capsys.readouterr().out
    assert "1 rejected request:\n422  POST /track  Input should be a valid string at body.id" in out


def test_events_from_a_collector_that_is_not_there_fails(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with Collector() as collector:
        url = collector.url

    code = main(["events", "--url", url])

    expected = (1, True)
    assert expected == (code, f"cannot read {url}" in capsys.readouterr().err)


DEMO_SCRIPT = """
import http.client, json, os, sys
from urllib.parse import urlsplit

endpoint = urlsplit(os.environ["TRACARDI_ENDPOINT"])
source = os.environ["TRACARDI_SOURCE_ID"]
events = [{"type": t, "properties": {"n": i}} for i, t in enumerate(sys.argv[1:])]
if events:
    conn = http.client.HTTPConnection(endpoint.hostname, endpoint.port)
    body = json.dumps({"source": {"id": source}, "events": events})
    conn.request("POST", "/track", body, {"Content-Type": "application/json",
                                          "User-Agent": "demo-script/1.0"})
    print("status", conn.getresponse().status)
sys.exit(int(os.environ.get("DEMO_EXIT", "0")))
"""


@pytest.fixture
def demo_script(tmp_path: Path) -> Path:
    script = tmp_path / "quick.py"
    script.write_text(textwrap.dedent(DEMO_SCRIPT))
    return script


def test_demo_runs_the_script_and_prints_what_was_stored(
    demo_script: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    code = main(["demo", str(demo_script), "page-view", "add-to-cart"])

    out = capfd.readouterr().out
    expected = (0, True, True, True, True)
    actual = (
        code,
        f"source id {DEMO_SOURCE_ID!r}" in out,
        "status 200" in out,
        "The collector stored 2 events:" in out,
        "add-to-cart" in out and '{"n": 1}' in out,
    )
    assert expected == actual, out


def test_demo_fails_when_nothing_was_stored(
    demo_script: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    code = main(["demo", str(demo_script)])

    expected = (1, True)
    assert expected == (code, "stored no events" in capfd.readouterr().err)


def test_demo_exits_with_the_scripts_status(
    demo_script: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DEMO_EXIT", "3")

    code = main(["demo", str(demo_script), "page-view"])

    expected = (3, True)
    assert expected == (code, "exited with status 3" in capfd.readouterr().err)


def test_python_m_runs_the_same_command_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tracardi_tracker", "demo", "--help"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    expected = (0, True)
    assert expected == (result.returncode, "TRACARDI_ENDPOINT" in result.stdout)


def test_events_answered_200_survive_the_collector_being_killed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "events.db"
    command = [sys.executable, "-m", "tracardi_tracker", "collector", "--port", "0",
               "--db", str(db)]  # fmt: skip
    with subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None
        url = process.stdout.readline().split(" listening on ")[1].split()[0]
        body = {
            "source": {"id": "s"},
            "events": [{"type": "kept", "id": f"e{i}"} for i in range(3)],
        }
        response = requests.post(
            url + "/track", json=body, headers={"User-Agent": "cli-test/1.0"}, timeout=5
        )
        process.kill()
        process.wait(timeout=10)

    main(["events", "--db", str(db), "--json"])

    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    expected = (200, ["e0", "e1", "e2"])
    assert expected == (response.status_code, [row["id"] for row in rows])
