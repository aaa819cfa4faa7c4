"""``plmon serve`` as a process: it listens, answers, and on SIGTERM drains, flushes and exits 0."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import httpx
import yaml
from daemonkit import SECRET, event, receiver, tenant, write_account

PLMON = [sys.executable, "-c", "from plmon.monitor.cli import main; main()"]


def _config(tmp_path, hook_url: str, **extra):  # type: ignore[no-untyped-def]
    cfg = {"state": {"url": f"sqlite:///{tmp_path / 'state.db'}"},
           "server": {"secret": "${PLMON_EVENTGRID_SECRET}"},
           "alerts": [{"type": "webhook", "name": "hook", "url": hook_url, "secret": "k", "min_severity": "high"}],
           "schedule": {"full_collection": "1h"}, **extra}
    path = tmp_path / "plmon.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _serve_one_event(folder, cfg, rec, env, before=()) -> str:  # type: ignore[no-untyped-def]
    """Start `plmon serve`, flip the storage account on disk, post its write event (after the events ``before``),
    wait for the opened alert, then SIGTERM; returns stderr after asserting the process exited 0."""
    proc = subprocess.Popen([*PLMON, "serve", "--from", str(folder), "--config", str(cfg), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        url = json.loads(proc.stdout.readline())["url"]
        deadline = time.monotonic() + 30
        while httpx.get(f"{url}/readyz").status_code != 200:
            assert time.monotonic() < deadline, "never ready"
            time.sleep(0.05)
        write_account(folder, "Enabled")
        assert httpx.post(f"{url}/api/eventgrid", params={"code": SECRET}, json=[*before, event()]).status_code == 200
        assert rec.wait_for(lambda a: a.event["type"] == "io.plmon.finding.opened"
                            and a.event["data"]["check_id"] == "public-access.enabled-with-private-endpoint")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-2000:]
    return err


def test_serve_answers_then_sigterm_drains_and_exits_zero(tmp_path):
    """The process prints its URL, turns an event into an alert, and exits 0 on SIGTERM with the queue empty."""
    folder = tenant(tmp_path / "t")
    with receiver() as rec:
        cfg = _config(tmp_path, rec.url)
        env = {**os.environ, "PLMON_EVENTGRID_SECRET": SECRET, "PLMON_LOG_FORMAT": "json", "PLMON_LOG_LEVEL": "info"}
        err = _serve_one_event(folder, cfg, rec, env)
        logs = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
        assert any(entry["event"] == "daemon_stopped" for entry in logs)
        assert any(entry["event"] == "reread" and entry.get("correlation_id") and entry.get("event_id")
                   and entry.get("resource_id") for entry in logs)
        db = sqlite3.connect(tmp_path / "state.db")
        assert db.execute("SELECT COUNT(*) FROM intake_events WHERE done_at IS NULL").fetchone()[0] == 0
        db.close()


def test_serve_refuses_unauthenticated_public_listen_with_exit_2(tmp_path):
    """Without server.secret on a non-loopback address, serve exits 2 with one line and no traceback."""
    folder = tenant(tmp_path / "t")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"state": {"url": f"sqlite:///{tmp_path / 's.db'}"}}))
    r = subprocess.run([*PLMON, "serve", "--from", str(folder), "--config", str(cfg), "--host", "0.0.0.0"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "server.secret" in r.stderr


def test_serve_with_bad_state_url_exits_2(tmp_path):
    """A state URL in a folder that does not exist is one line and exit 2, before anything listens."""
    folder = tenant(tmp_path / "t")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"state": {"url": "sqlite:////nonexistent/dir/s.db"}}))
    r = subprocess.run([*PLMON, "serve", "--from", str(folder), "--config", str(cfg)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "does not exist" in r.stderr


def test_serve_on_an_azure_tables_store_turns_an_event_into_an_alert(tmp_path):
    """`plmon serve` runs on an azuretables:// state URL (Azurite): its intake queue lives in the same
    tables, an event becomes one signed alert, and SIGTERM exits 0."""
    import azurite
    from azure.data.tables import TableServiceClient

    prefix = azurite.unique_prefix()
    folder = tenant(tmp_path / "t")
    with receiver() as rec:
        cfg = _config(tmp_path, rec.url,
                      state={"url": f"azuretables:///{prefix}?connection_string_env=PLMON_TEST_TABLES"})
        env = {**os.environ, "PLMON_EVENTGRID_SECRET": SECRET, "PLMON_TEST_TABLES": azurite.connection_string()}
        _serve_one_event(folder, cfg, rec, env)
        assert not (tmp_path / "state.db").exists()  # nothing fell back to a local SQLite file
        tables = {t.name for t in TableServiceClient.from_connection_string(azurite.connection_string())
                  .list_tables() if t.name.startswith(prefix)}
        assert any("intake" in name.lower() for name in tables), tables


def test_malformed_chunked_posts_log_one_json_line_each_and_no_traceback(tmp_path):
    """Raw POSTs with broken chunked framing (with and without the secret) get a 400; the daemon's log stays
    one JSON line per event with the reason, and holds no traceback text at all."""
    import socket

    folder = tenant(tmp_path / "t")
    with receiver() as rec:
        cfg = _config(tmp_path, rec.url)
        env = {**os.environ, "PLMON_EVENTGRID_SECRET": SECRET, "PLMON_LOG_FORMAT": "json", "PLMON_LOG_LEVEL": "info"}
        proc = subprocess.Popen([*PLMON, "serve", "--from", str(folder), "--config", str(cfg), "--port", "0"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
        try:
            url = json.loads(proc.stdout.readline())["url"]
            deadline = time.monotonic() + 30
            while httpx.get(f"{url}/readyz").status_code != 200:
                assert time.monotonic() < deadline, "never ready"
                time.sleep(0.05)
            port = int(url.rsplit(":", 1)[1])
            answers = []
            for query in ("", f"?code={SECRET}"):
                for body in (b"zz\r\nhello\r\n0\r\n\r\n", b"5\r\nhelloXX\r\n0\r\n\r\n", b"5\r\nhello\r\n-1\r\n\r\n"):
                    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                        s.sendall(f"POST /api/eventgrid{query} HTTP/1.1\r\nHost: x\r\nContent-Type: "
                                  "application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode() + body)
                        answers.append(s.recv(4096).split(b"\r\n", 1)[0])
            assert httpx.get(f"{url}/healthz").status_code == 200   # still serving
            time.sleep(0.3)
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, err[-2000:]
    assert answers and all(a.startswith(b"HTTP/1.1 4") for a in answers), answers
    assert "Traceback" not in err and 'File "' not in err and "Exception in ASGI" not in err
    lines = err.splitlines()
    assert all(line.startswith("{") for line in lines), [x for x in lines if not x.startswith("{")][:5]
    logs = [json.loads(line) for line in lines]
    bad = [entry for entry in logs if "Invalid HTTP request" in entry["event"]]
    assert len(bad) >= len(answers) // 2 and all(entry["level"] == "warning" for entry in bad)
    assert not [entry for entry in logs if "exception" in entry or entry["level"] == "error"]


def test_serve_logs_one_info_line_per_collection_event_and_delivery_batch(tmp_path):
    """At info, plmon serve writes one line per full collection, per processed event (a re-read, or an ignored
    event, with its ids) and per delivery batch, besides its start and stop: no per-read, per-transition,
    per-request or per-alert lines."""
    folder = tenant(tmp_path / "t")
    vm = ("/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/rg1/providers/Microsoft.Compute"
          "/virtualMachines/vm1")
    ignored = event(vm, op="Microsoft.Compute/virtualMachines/write", event_id="ev-vm")
    with receiver() as rec:
        cfg = _config(tmp_path, rec.url)
        env = {**os.environ, "PLMON_EVENTGRID_SECRET": SECRET, "PLMON_LOG_FORMAT": "json", "PLMON_LOG_LEVEL": "info"}
        err = _serve_one_event(folder, cfg, rec, env, before=[ignored])
    infos = [entry for entry in map(json.loads, (x for x in err.splitlines() if x.startswith("{")))
             if entry["level"] == "info"]
    names = [entry["event"] for entry in infos]
    assert names.count("full_collection_done") == 1 and names.count("reread") == 1
    assert names.count("event_ignored") == 1
    assert set(names) == {"daemon_started", "full_collection_done", "reread", "event_ignored", "alerts_sent",
                          "daemon_stopped"}
    (skipped,) = (e for e in infos if e["event"] == "event_ignored")
    assert (skipped["event_id"], skipped["resource_id"], skipped["reason"]) == ("ev-vm", vm, "irrelevant_operation")
    (collection,) = (e for e in infos if e["event"] == "full_collection_done")
    assert collection["requests"] > 0 and collection["transitions"] == 1
    assert sum(e["delivered"] for e in infos if e["event"] == "alerts_sent") == 1
