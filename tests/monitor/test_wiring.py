"""The composition root: every entry point (scan --notify / alerts, plmon serve, the Azure Function) builds its
parts through ``plmon.monitor.wiring`` and honours every section of the configuration, and nothing else reads the
environment."""

from __future__ import annotations

import ast
import itertools
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
import yaml
from daemonkit import ACCOUNT_ID, PUBLIC_CHECK, SECRET, event, tenant, write_account
from functionkit import load_app
from receiver import Receiver
from tenantkit import SUB

from plmon.alerts.delivery import DeliveryWorker
from plmon.alerts.outbox import Route
from plmon.checks.finding import Severity
from plmon.monitor import wiring
from plmon.monitor.config import Config, load_config
from plmon.monitor.function_host import host, reset_host
from plmon.monitor.service.daemon import Daemon
from plmon.monitor.state.intake import SqliteIntake
from plmon.monitor.state.sqlite import SqliteStore

ROOT = Path(__file__).resolve().parents[2]
PLMON = [sys.executable, "-c", "from plmon.monitor.cli import main; main()"]
HOOK_SECRET = "hook-signing-key-7f3a"
LOG_ENV = {"PLMON_LOG_LEVEL": "info", "PLMON_LOG_FORMAT": "json"}


def full_config(tmp: Path, hook_url: str) -> Path:
    """A config with a non-default value in every section, secrets as ``${VAR}`` as a user writes them."""
    cfg = {
        "state": {"url": f"sqlite:///{tmp / 'wired.db'}", "retention": "7d"},
        "checks": {"connection.pending": {"severity": "high", "pending_max_age": "2h"},
                   "pls.proxy-protocol": {"enabled": False}},
        "waivers": [{"check_id": "pls.visibility-public", "reason": "partner service", "expires": "2099-01-31",
                     "resource_id": f"/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.Network/"
                                    "privateLinkServices/x"}],
        "alerts": [{"type": "webhook", "name": "soc", "url": hook_url, "secret": "${PLMON_TEST_HOOK_SECRET}",
                    "min_severity": "high", "checks": ["public-access.*"], "subscriptions": [SUB],
                    "digest_threshold": 3, "timeout": "2s"},
                   {"type": "slack", "name": "chat", "url": "https://hooks.slack.invalid/x", "min_severity": "low",
                    "timeout": "4s"}],
        "delivery": {"max_attempts": 3, "backoff_base": "1s", "backoff_max": "15s", "notify_timeout": "5s"},
        "server": {"secret": "${PLMON_TEST_EVENTGRID_SECRET}", "event_max_attempts": 2, "event_retry_base": "1s",
                   "event_retry_max": "3s", "max_body_bytes": 4096},
        "schedule": {"full_collection": "2h", "reminder_interval": "6h", "delivery_interval": "2s",
                     "retention_interval": "3h"},
        "dns": {"zone_overrides": {"privatelink.blob.core.windows.net": "privatelink.blob.core.usgovcloudapi.net"}},
    }
    path = tmp / "plmon.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


ENV = {"PLMON_TEST_HOOK_SECRET": HOOK_SECRET, "PLMON_TEST_EVENTGRID_SECRET": SECRET}


def assert_delivery_honoured(worker: DeliveryWorker, config: Config) -> None:
    """``delivery:`` and ``alerts:`` as the worker runs them: attempts, every retry delay bounded by
    backoff_max (jitter included), a lease beyond the slowest channel's timeout, the configured channels."""
    import random

    policy = worker.policy
    assert policy.max_attempts == config.delivery.max_attempts == 3
    assert policy.base == timedelta(seconds=1)
    rng = random.Random(7)
    cap = config.delivery.backoff_max.total_seconds()
    assert all(policy.delay(n, rng).total_seconds() <= cap for n in range(1, 40))
    assert policy.lease >= timedelta(seconds=4) * 2  # the slack channel's 4 s timeout, twice
    chans = {name: getattr(c, "inner", c) for name, c in worker.channels.items()}
    assert set(chans) == {"soc", "chat"}
    assert chans["soc"].digest_threshold == 3 and chans["chat"].digest_threshold == 20
    assert chans["soc"]._timeout == 2.0 and chans["chat"]._timeout == 4.0
    assert chans["soc"]._secret == HOOK_SECRET


def assert_store_honoured(store: Any, tmp: Path) -> None:
    assert isinstance(store, SqliteStore) and Path(store.path) == tmp / "wired.db"


def assert_daemon_honoured(daemon: Daemon, config: Config, tmp: Path) -> None:
    """Every section the daemon reads, as the entry point built it."""
    assert_store_honoured(daemon.store, tmp)
    assert isinstance(daemon.intake, SqliteIntake) and Path(daemon.intake.path) == tmp / "wired.db"
    assert_delivery_honoured(daemon.delivery, config)
    assert set(daemon.routes) == {Route("soc", Severity.HIGH, ("public-access.*",), (SUB,)),
                                  Route("chat", Severity.LOW, ("*",), ())}
    assert daemon.settings["connection.pending"].severity is Severity.HIGH
    assert daemon.settings["connection.pending"].params["pending_max_age"] == timedelta(hours=2)
    assert daemon.settings["pls.proxy-protocol"].enabled is False
    zones = daemon.settings["dns.zone-name-mismatch"].params["zone_overrides"]
    assert zones["privatelink.blob.core.windows.net"] == "privatelink.blob.core.usgovcloudapi.net"
    assert [w.check_id for w in daemon.waivers] == ["pls.visibility-public"]
    assert daemon.config.server.event_max_attempts == 2 and daemon.config.server.max_body_bytes == 4096
    assert daemon.config.schedule.full_collection == timedelta(hours=2)
    assert daemon.config.state.retention == timedelta(days=7)


def assert_logging_honoured(sink: type) -> None:
    """``PLMON_LOG_LEVEL=info`` and JSON, with the secret-redacting processor installed."""
    cfg = structlog.get_config()
    assert cfg["wrapper_class"] is structlog.make_filtering_bound_logger(logging.INFO)
    assert any(getattr(p, "__name__", "") == "_redact" for p in cfg["processors"])
    assert isinstance(cfg["processors"][-1], structlog.processors.JSONRenderer)
    assert isinstance(cfg["logger_factory"], sink)


@pytest.fixture(autouse=True)
def _fresh_logging() -> Any:
    """Each test starts from structlog's unconfigured defaults (as a new process does) and leaves them so."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()
    reset_host(None)


def test_only_wiring_and_config_read_the_environment() -> None:
    """No product module but monitor/wiring.py (and config's ${VAR} expansion) reads os.environ or os.getenv."""
    offenders = []
    for folder in ("monitor", "alerts", "checks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel in ("monitor/wiring.py", "monitor/config.py"):
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "environb") \
                        and isinstance(node.value, ast.Name) and node.value.id == "os":
                    offenders.append(f"{rel}:{node.lineno}")
                if isinstance(node, ast.ImportFrom) and node.module == "os" \
                        and {a.name for a in node.names} & {"environ", "getenv"}:
                    offenders.append(f"{rel}:{node.lineno}")
    assert offenders == []


# What only the composition root builds, and the modules that define (or own) each part.
BUILT_BY_WIRING = {
    "Daemon": {"monitor/service/daemon.py"},
    "DeliveryWorker": {"alerts/delivery.py", "monitor/service/daemon.py"},   # the daemon owns its worker
    "RetryPolicy": {"alerts/delivery.py"},
    "build_channels": {"alerts/channel.py", "monitor/service/daemon.py"},     # the daemon's default when given none
    "open_store": {"monitor/state/store.py"},
    "intake_beside": {"monitor/state/intake.py"},
    "configure_logging": {"monitor/logs.py"},
    "arm_credential": {"monitor/collect/azure/credentials.py", "monitor/collect/sources.py"},
    "live_settings_from_env": {"monitor/collect/sources.py"},
}


def test_only_wiring_builds_the_parts() -> None:
    """No entry point (CLI, serve, the Function app) builds a daemon, store, intake, channels, retry policy or
    logging itself: each calls plmon.monitor.wiring, so no entry point can drop a setting another honours."""
    offenders = []
    files = [*sorted((ROOT / "monitor").rglob("*.py")), *sorted((ROOT / "alerts").glob("*.py")),
             ROOT / "deploy" / "azure-function" / "function_app.py"]
    for path in files:
        rel = path.relative_to(ROOT).as_posix()
        if rel == "monitor/wiring.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                if name in BUILT_BY_WIRING and rel not in BUILT_BY_WIRING[name]:
                    offenders.append(f"{rel}:{node.lineno} {name}()")
    assert offenders == []


def test_cli_notify_and_alerts_build_from_every_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """scan --notify and plmon alerts get the configured store, routes, channels and retry policy."""
    from plmon.monitor.cli.alerts import scan_observations, worker_for

    for k, v in {**ENV, **LOG_ENV}.items():
        monkeypatch.setenv(k, v)
    config = load_config(full_config(tmp_path, "http://127.0.0.1:9/hook"))
    wiring.setup_logging()
    assert_logging_honoured(structlog.PrintLoggerFactory)
    store, observe = scan_observations(config, notify=True)
    assert store is not None and observe is not None
    try:
        assert_store_honoured(store, tmp_path)
        assert_delivery_honoured(worker_for(store, config), config)
        assert set(wiring.routes(config)) == {Route("soc", Severity.HIGH, ("public-access.*",), (SUB,)),
                                              Route("chat", Severity.LOW, ("*",), ())}
    finally:
        store.close()


def test_serve_daemon_builds_from_every_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon plmon serve runs (wiring.build_daemon over the --from source) honours every section."""
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    config = load_config(full_config(tmp_path, "http://127.0.0.1:9/hook"))
    folder = tenant(tmp_path / "t")
    daemon = wiring.build_daemon(config, wiring.open_source(folder, subscriptions=[SUB], workers=3))
    try:
        assert_daemon_honoured(daemon, config, tmp_path)
        assert daemon.workers == 3 and daemon.subscriptions == [SUB]
    finally:
        daemon.intake.close()
        daemon.store.close()


def test_function_host_builds_from_every_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Function's instance, built on its first trigger (get_functions, as the host runs it), honours every
    section of the config its app settings name, and installs the logging."""
    folder = tenant(tmp_path / "t")
    settings = {**ENV, **LOG_ENV, "PLMON_CONFIG": str(full_config(tmp_path, "http://127.0.0.1:9/hook")),
                "PLMON_FROM": str(folder), "PLMON_SUBSCRIPTIONS": f" {SUB} ,"}
    for k, v in settings.items():
        monkeypatch.setenv(k, v)
    functions = {f.get_function_name(): f for f in load_app().app.get_functions()}
    reset_host(None)
    resp = functions["health"].get_user_function()(_health_request())
    assert resp.status_code in (200, 503)
    daemon = host().daemon
    try:
        assert_daemon_honoured(daemon, host().config, tmp_path)
        assert daemon.subscriptions == [SUB]
        assert_logging_honoured(structlog.stdlib.LoggerFactory)
    finally:
        daemon.intake.close()
        daemon.store.close()


def _health_request() -> Any:
    import azure.functions as func

    return func.HttpRequest(method="GET", url="/api/healthz", body=b"")


def test_function_logs_redact_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      caplog: pytest.LogCaptureFixture) -> None:
    """In the Function, plmon's log lines reach the host's (stdlib) logging as JSON with secret-named values
    redacted: the processor the CLI installs is installed there too."""
    folder = tenant(tmp_path / "t")
    for k, v in {**ENV, "PLMON_CONFIG": str(full_config(tmp_path, "http://127.0.0.1:9/hook")),
                 "PLMON_FROM": str(folder), "PLMON_LOG_LEVEL": "info"}.items():
        monkeypatch.setenv(k, v)
    functions = {f.get_function_name(): f for f in load_app().app.get_functions()}
    reset_host(None)
    caplog.set_level(logging.INFO)
    functions["full_collection"].get_user_function()(None)
    structlog.get_logger("monitor.probe").warning("probe", webhook_secret=HOOK_SECRET, token=SECRET)
    try:
        lines = [r.getMessage() for r in caplog.records if r.name.startswith(("plmon.", "monitor."))]
        assert any(json.loads(line)["event"] == "probe" for line in lines)
        assert any(json.loads(line)["event"] == "function_timer_done" for line in lines)
        assert HOOK_SECRET not in caplog.text and SECRET not in caplog.text
        assert all(line.startswith("{") for line in lines)
    finally:
        host().daemon.intake.close()
        host().daemon.store.close()


def test_serve_honours_delivery_retries_and_dead_letter(tmp_path: Path) -> None:
    """plmon serve retries a failing channel as ``delivery:`` says: each retry within backoff_max (plus the
    delivery interval), and after max_attempts the alert is dead-lettered, not retried again."""
    folder = tenant(tmp_path / "t")
    rx = Receiver(secret=HOOK_SECRET, script=[503] * 50)
    cfg = {"state": {"url": f"sqlite:///{tmp_path / 'state.db'}"},
           "server": {"secret": "${PLMON_TEST_EVENTGRID_SECRET}"},
           "alerts": [{"type": "webhook", "name": "hook", "url": rx.url, "secret": "${PLMON_TEST_HOOK_SECRET}",
                       "min_severity": "high", "timeout": "1s"}],
           "delivery": {"max_attempts": 3, "backoff_base": 0.3, "backoff_max": 0.5},
           "schedule": {"full_collection": "1h", "delivery_interval": 0.2}}
    (tmp_path / "plmon.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, **ENV, "PLMON_LOG_LEVEL": "warning", "PLMON_LOG_FORMAT": "json"}
    proc = subprocess.Popen([*PLMON, "serve", "--from", str(folder), "--config", str(tmp_path / "plmon.yaml"),
                             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        url = json.loads(proc.stdout.readline())["url"]  # type: ignore[union-attr]
        deadline = time.monotonic() + 30
        while httpx.get(f"{url}/readyz").status_code != 200:
            assert time.monotonic() < deadline, "never ready"
            time.sleep(0.05)
        write_account(folder, "Enabled")
        assert httpx.post(f"{url}/api/eventgrid", params={"code": SECRET}, json=[event()]).status_code == 200
        deadline = time.monotonic() + 12
        while len(rx.requests) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.5)  # long enough for a fourth attempt, were one made
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        rx.close()
    assert proc.returncode == 0, err[-2000:]
    attempts = [r for r in rx.requests if json.loads(r["body"])["data"]["check_id"] == PUBLIC_CHECK]
    assert len(attempts) == 3, [r["at"] for r in attempts]
    gaps = [b["at"] - a["at"] for a, b in itertools.pairwise(attempts)]
    assert all(g <= 0.5 + 0.2 + 1.0 for g in gaps), gaps
    db = sqlite3.connect(tmp_path / "state.db")
    statuses = db.execute("SELECT status, attempts FROM outbox WHERE check_id = ?", (PUBLIC_CHECK,)).fetchall()
    db.close()
    assert statuses == [("failed", 3)]
    assert ACCOUNT_ID.lower() in json.loads(attempts[0]["body"])["subject"].lower()


def test_scan_notify_honours_routing_channels_and_delivery(tmp_path: Path) -> None:
    """scan --notify with the full config: each channel gets only what its routing selects, the failing one is
    retried max_attempts times within backoff_max and then dead-lettered, all in the configured store."""
    from click.testing import CliRunner

    from plmon.monitor.cli import cli

    folder = tenant(tmp_path / "t", public="Enabled")
    soc = Receiver(secret=HOOK_SECRET, script=[503] * 50)
    chat = Receiver()
    path = full_config(tmp_path, soc.url)
    data = yaml.safe_load(path.read_text())
    data["alerts"][1]["url"] = chat.url
    path.write_text(yaml.safe_dump(data))
    try:
        started = time.monotonic()
        r = CliRunner().invoke(cli, ["scan", "--from", str(folder), "--config", str(path), "--notify"],
                               env={**ENV, **LOG_ENV}, catch_exceptions=False)
        took = time.monotonic() - started
    finally:
        soc.close()
        chat.close()
    assert r.exit_code == 0, r.output
    sent_to_soc = {json.loads(x["body"])["data"]["check_id"] for x in soc.requests}
    assert sent_to_soc == {PUBLIC_CHECK} and len(soc.requests) == 3           # routing; max_attempts
    gaps = [b["at"] - a["at"] for a, b in itertools.pairwise(soc.requests)]
    assert all(g <= 15 + 1 for g in gaps) and took < 30, (gaps, took)  # backoff_max, notify_timeout
    assert len(chat.accepted) >= 1 and all(b"blocks" in x["body"] for x in chat.accepted)  # slack, min_severity low
    db = sqlite3.connect(tmp_path / "wired.db")                               # state.url
    rows = db.execute("SELECT channel, status, attempts FROM outbox WHERE channel = 'soc'").fetchall()
    db.close()
    assert rows == [("soc", "failed", 3)]


def test_intake_lives_in_the_given_stores_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A daemon built over an already-open SQLite store queues its events in that store's file, not in a
    second database the config's default state.url would name in the working directory."""
    monkeypatch.chdir(tmp_path)
    folder = tenant(tmp_path / "t")
    config = load_config(None, env={})
    daemon = wiring.build_daemon(config, wiring.open_source(folder), store=SqliteStore(tmp_path / "own.db"))
    try:
        assert Path(daemon.intake.path) == tmp_path / "own.db"
    finally:
        daemon.intake.close()
        daemon.store.close()
    assert not (tmp_path / "plmon-state.db").exists()
