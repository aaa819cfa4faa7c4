"""Bad input through the CLI: exactly one stderr line starting 'plmon:' with the reason, exit 2, no traceback.

Each case here was a traceback or a silent exit 0 on inputs from outside trials (issue 12, "Bad input").
"""

from __future__ import annotations

from pathlib import Path

import pytest
from clikit import assert_one_line, run_main
from tenantkit import SUB, endpoint, storage_account, sub_list, write_tenant

from plmon.monitor.replay.server import ReplayServer

DEMO = Path(__file__).resolve().parents[3] / "monitor" / "demo_tenant"
UNKNOWN_SUB = "aaaaaaaa-0000-4000-8000-000000000099"






@pytest.fixture()
def tenant(tmp_path: Path) -> Path:
    st = storage_account("st1")
    return write_tenant(tmp_path / "tenant", {
        sub_list("privateEndpoints"): {"value": [endpoint("pe1", st["id"], status="Rejected")]}, st["id"]: st})


# --- item 5: --subscription ------------------------------------------------------------------------

@pytest.mark.parametrize(("sub", "needle"), [("not-a-guid", "not a subscription id"),
                                             (UNKNOWN_SUB, "not a subscription this identity can read")])
def test_subscription_that_is_not_readable_is_exit_2_from_a_folder(
        sub: str, needle: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    """--subscription with a non-GUID, or a GUID absent from the tenant and unreadable by id, is exit 2 with
    one line naming it (it used to scan nothing and say every scope was read)."""
    monkeypatch.chdir(tmp_path)
    rc, out, err = run_main(["scan", "--from", str(DEMO), "--subscription", sub], capsys)
    assert_one_line(rc, err, f"--subscription {sub}", needle)
    assert out == ""


def test_listed_but_unreadable_subscription_still_scans_with_gaps(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A subscription the tenant lists but whose lists answer 403 is scanned: its gaps are reported, exit 0."""
    monkeypatch.chdir(tmp_path)
    rc, out, _ = run_main(["scan", "--from", str(DEMO), "--subscription", "aaaaaaaa-0000-4000-8000-000000000004"],
                          capsys)
    assert rc == 0 and "AuthorizationFailed" in out


@pytest.mark.parametrize("sub", ["not-a-guid", UNKNOWN_SUB])
def test_subscription_that_is_not_readable_is_exit_2_live(
        sub: str, tenant: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    """The same on live ARM (the replay server through the real SDK): exit 2 and one line, no scan."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PLMON_ARM_TOKEN", "t")
    monkeypatch.setenv("PLMON_ARM_RETRY_BACKOFF", "0.01")
    with ReplayServer(tenant) as server:
        rc, out, err = run_main(["scan", "--arm-endpoint", server.base_url, "--ca-bundle", server.ca_bundle,
                                 "--subscription", sub], capsys)
        ok, ok_out, _ = run_main(["scan", "--arm-endpoint", server.base_url, "--ca-bundle", server.ca_bundle,
                                  "--subscription", SUB.upper()], capsys)
    assert_one_line(rc, err, f"--subscription {sub}")
    assert out == ""
    assert ok == 0 and "connection.rejected" in ok_out


# --- contradictory or unknown flags ----------------------------------------------------------------

def _store_config(tmp_path: Path) -> Path:
    """A config naming a state store in ``tmp_path`` that exists (created as plmon serve would)."""
    from plmon.monitor.state.open import intake_for_store_url, open_store

    url = f"sqlite:///{tmp_path / 'state.db'}"
    open_store(url).close()
    intake_for_store_url(url).close()
    cfg = tmp_path / "plmon.yaml"
    cfg.write_text(f"state: {{url: \"{url}\"}}\n")
    return cfg


def test_report_from_and_fresh_is_exit_2(tenant: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """report --from DIR --fresh asks for two sources at once: exit 2 naming both flags, no report."""
    monkeypatch.chdir(tmp_path)
    rc, out, err = run_main(["report", "--from", str(tenant), "--fresh", "--format", "json"], capsys)
    assert_one_line(rc, err, "--fresh", "--from")
    assert out == ""


def test_events_retry_unknown_id_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """events --retry with an id that is not a failed event is exit 2 naming the id (it said 're-queued 0')."""
    monkeypatch.chdir(tmp_path)
    cfg = _store_config(tmp_path)
    rc, _, err = run_main(["events", "--config", str(cfg), "--retry", "no-such-event"], capsys)
    assert_one_line(rc, err, "--retry no-such-event", "no failed event")


# --- read-only commands never create a store ------------------------------------------------------

@pytest.mark.parametrize("args", [["findings"], ["findings", "--all"], ["alerts"], ["alerts", "--failed"],
                                  ["alerts", "--retry"], ["events"], ["events", "--failed"]])
def test_read_only_commands_without_a_store_create_nothing(args: list[str], tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """findings/alerts/events with no state store say so (exit 2, one line) and leave no file behind."""
    monkeypatch.chdir(tmp_path)
    rc, out, err = run_main(args, capsys)
    assert_one_line(rc, err, "no state store", "plmon-state.db")
    assert out == "" and list(tmp_path.iterdir()) == []


def test_read_only_commands_read_an_existing_store(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """With a store that exists, findings and events answer from it (exit 0)."""
    monkeypatch.chdir(tmp_path)
    cfg = _store_config(tmp_path)
    rc, out, _ = run_main(["findings", "--config", str(cfg), "--format", "json"], capsys)
    assert rc == 0 and out.strip() == "[]"
    rc, out, _ = run_main(["events", "--config", str(cfg), "--format", "json"], capsys)
    assert rc == 0 and '"pending": 0' in out


# --- configuration --------------------------------------------------------------------------------

SECRET = "hunter2-not-for-your-terminal"
# "Billion laughs": nine aliases of nine, nine levels deep (387 million values once expanded).
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]\n" for prev, name in zip("abcdefgh", "bcdefghi", strict=True))


@pytest.mark.parametrize(("text", "needles"), [
    ("waivers:\n  - {check_id: pls.x, resource_id: /a, reason: r, expires: 2026-13-01}\n",
     ("waivers.0.expires", "month")),
    ("waivers:\n  - {check_id: pls.x, resource_id: /a, reason: r, expires: !!timestamp 2026-13-01}\n",
     ("YAML", "month")),
    ("[" * 100_000 + "\n", ("YAML", "nested too deeply")),
    ("waivers:\n  - {check_id: pls.x, resource_id: /a, reason: r, expires: 20270131}\n",
     ("waivers.0.expires", "a date")),
    (BOMB, ("more than 100,000 values",)),
])
def test_config_values_yaml_cannot_construct_are_one_line(text: str, needles: tuple[str, ...], tenant: Path,
                                                          tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A waiver date PyYAML cannot build (2026-13-01), YAML nested 100,000 deep, a date written as a number
    (read as seconds since 1970) and YAML aliases expanding to billions of values are one line naming the problem,
    not a traceback, a wrong date or minutes of CPU."""
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "plmon.yaml"
    cfg.write_text(text)
    rc, out, err = run_main(["scan", "--from", str(tenant), "--config", str(cfg)], capsys)
    assert_one_line(rc, err, "plmon.yaml", *needles)
    assert out == ""


def test_config_that_is_not_utf8_is_one_line(tenant: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A config file that is not UTF-8 is one line saying so (it was a UnicodeDecodeError traceback)."""
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "plmon.yaml"
    cfg.write_bytes(b"checks: {}\n\xff\xfe\n")
    rc, _, err = run_main(["scan", "--from", str(tenant), "--config", str(cfg)], capsys)
    assert_one_line(rc, err, "plmon.yaml", "not UTF-8")


def test_waiver_dates_still_parse(tenant: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A valid unquoted waiver date still reaches the scan document as that date (dates are parsed by the model)."""
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "plmon.yaml"
    cfg.write_text("waivers:\n  - {check_id: connection.*, resource_pattern: '*', reason: ok, expires: 2099-01-31}\n")
    rc, out, _ = run_main(["scan", "--from", str(tenant), "--config", str(cfg), "--format", "json"], capsys)
    assert rc == 0 and '"expires": "2099-01-31"' in out


@pytest.mark.parametrize(("text", "where"), [
    ('alerts:\n  - {type: webhook, url: "https://h", secret: s, min_severity: "${PLMON_TEST_SECRET}"}\n',
     "alerts.0.min_severity"),
    ('checks:\n  connection.pending: {pending_max_age: "${PLMON_TEST_SECRET}"}\n',
     "checks.connection.pending.pending_max_age"),
    ('checks:\n  connection.pending: {severity: "${PLMON_TEST_SECRET}"}\n', "checks.connection.pending.severity"),
    ('schedule: {full_collection: "1${PLMON_TEST_SECRET}"}\n', "schedule.full_collection"),
    ('state: {url: "${PLMON_TEST_SECRET}"}\n', "state.url"),
    ('state: {url: "x${PLMON_TEST_SECRET}://y"}\n', "state.url"),
])
def test_config_error_names_the_variable_not_its_value(text: str, where: str, tenant: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """An error about a value that came from ${VAR} names the variable and never prints the value."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PLMON_TEST_SECRET", SECRET)
    cfg = tmp_path / "plmon.yaml"
    cfg.write_text(text)
    rc, out, err = run_main(["scan", "--from", str(tenant), "--config", str(cfg)], capsys)
    assert_one_line(rc, err, where, "${PLMON_TEST_SECRET}")
    assert SECRET not in err + out


# --- state files that are not plmon's, or are damaged ---------------------------------------------

def _state_config(tmp_path: Path, db: Path) -> Path:
    cfg = tmp_path / "state.yaml"
    cfg.write_text(f"state: {{url: \"sqlite:///{db}\"}}\n")
    return cfg


def _corrupt_store(db: Path, start: int, end: int | None = None) -> None:
    """A plmon store with bytes ``start:end`` overwritten, its 100-byte SQLite header left valid."""
    import sqlite3

    from plmon.monitor.state.open import open_store

    open_store(f"sqlite:///{db}").close()
    raw = sqlite3.connect(db)
    raw.execute("PRAGMA journal_mode = DELETE")  # fold the WAL back so the damage is in the one file
    raw.close()
    data = bytearray(db.read_bytes())
    end = len(data) if end is None else end
    data[start:end] = b"\xab" * (end - start)
    db.write_bytes(bytes(data))


@pytest.mark.parametrize("args", [["findings"], ["alerts"], ["events", "--failed"], ["report", "--format", "json"],
                                  ["scan", "--notify"]])
@pytest.mark.parametrize(("damage", "needle"), [((4096, None), "corrupt"), ((100, 4096), "corrupt")])
def test_corrupt_state_store_is_one_line(args: list[str], damage: tuple[int, int | None], needle: str,
                                         tenant: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A state file with a valid header and damaged pages (its schema page or the tables' pages) is exit 2
    with one line saying it is corrupt, from every command that opens the store."""
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "state.db"
    _corrupt_store(db, *damage)
    extra = ["--from", str(tenant)] if args[0] == "scan" else []
    rc, _, err = run_main([*args, *extra, "--config", str(_state_config(tmp_path, db))], capsys)
    assert_one_line(rc, err, str(db), needle)


@pytest.mark.parametrize("args", [["findings"], ["alerts"], ["events"], ["scan", "--notify"]])
def test_foreign_sqlite_file_is_refused_and_left_untouched(args: list[str], tenant: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Another application's SQLite file with a 'findings' table is 'not a plmon state store' (exit 2, one
    line), and not one byte of it changes (no migration, no WAL switch)."""
    import sqlite3

    monkeypatch.chdir(tmp_path)
    db = tmp_path / "app.db"
    other = sqlite3.connect(db)
    other.execute("CREATE TABLE findings (id INTEGER PRIMARY KEY, note TEXT)")
    other.execute("INSERT INTO findings (note) VALUES ('theirs')")
    other.commit()
    other.close()
    before = db.read_bytes()
    extra = ["--from", str(tenant)] if args[0] == "scan" else []
    rc, _, err = run_main([*args, *extra, "--config", str(_state_config(tmp_path, db))], capsys)
    assert_one_line(rc, err, str(db), "not a plmon state store")
    assert db.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.db", "state.yaml", "tenant"]


# --- Azure text that no UTF-8 output can encode ---------------------------------------------------

LONE = "pls-public\ud83d"   # half of a UTF-16 pair, as JSON can spell it (\ud83d)


@pytest.fixture()
def surrogate_tenant(tmp_path: Path) -> Path:
    """A Private Link Service named with a lone surrogate escape, visible to '*' so it has findings."""
    pls = f"/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.Network/privateLinkServices/{LONE}"
    return write_tenant(tmp_path / "surrogate", {sub_list("privateLinkServices"): {"value": [
        {"id": pls, "name": LONE, "properties": {"visibility": {"subscriptions": ["*"]},
                                                  "autoApproval": {"subscriptions": ["*"]}}}]}})


@pytest.mark.parametrize("args", [["scan", "--format", "table"], ["scan", "--format", "json"],
                                  ["scan", "--format", "csv"], ["scan", "--format", "sarif"],
                                  *(["report", "--format", f] for f in ("html", "md", "json", "csv", "sarif"))])
def test_lone_surrogate_in_a_name_prints_in_every_format(args: list[str], surrogate_tenant: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A resource name holding a lone surrogate prints in every scan and report format (UTF-8, exit 0), with the
    name still recognisable as 'pls-public\\ud83d' (it was a UnicodeEncodeError traceback)."""
    monkeypatch.chdir(tmp_path)
    rc, out, err = run_main([*args, "--from", str(surrogate_tenant)], capsys)
    assert rc == 0, err
    out.encode("utf-8")  # strict: no lone surrogate reached the output
    shown = out.replace("\\\\", "\\")  # JSON and SARIF escape the backslash of the visible escape
    assert "pls-public\\ud83d" in shown
    assert "Traceback" not in err


def test_lone_surrogate_reaches_the_state_store_and_back(surrogate_tenant: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """scan --notify stores the finding on that resource and findings lists it: SQLite never sees the surrogate."""
    monkeypatch.chdir(tmp_path)
    cfg = _state_config(tmp_path, tmp_path / "state.db")
    rc, _, err = run_main(["scan", "--from", str(surrogate_tenant), "--notify", "--config", str(cfg)], capsys)
    assert rc == 0, err
    rc, out, _ = run_main(["findings", "--config", str(cfg), "--format", "json"], capsys)
    assert rc == 0 and "pls-public\\\\ud83d" in out


def test_recorded_list_nested_100000_deep_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A recorded list file of '[' x 100,000 is one line naming the file (it was a RecursionError)."""
    monkeypatch.chdir(tmp_path)
    folder = write_tenant(tmp_path / "deep", {})
    (folder / "arm" / (sub_list("privateEndpoints") + ".json")).parent.mkdir(parents=True, exist_ok=True)
    (folder / "arm" / (sub_list("privateEndpoints") + ".json")).write_text("[" * 100_000)
    rc, out, err = run_main(["scan", "--from", str(folder)], capsys)
    assert_one_line(rc, err, "privateEndpoints.json", "nested too deeply")
    assert out == ""


def test_lone_surrogate_from_live_arm_prints(surrogate_tenant: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The same name read from live ARM (the replay server sends the escape as ARM would, through the real SDK)
    prints in the table as the visible escape: live answers go through the same decoder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PLMON_ARM_TOKEN", "t")
    with ReplayServer(surrogate_tenant) as server:
        rc, out, err = run_main(["scan", "--arm-endpoint", server.base_url, "--ca-bundle", server.ca_bundle,
                                 "--format", "csv"], capsys)
    assert rc == 0, err
    out.encode("utf-8")
    assert "pls-public\\ud83d" in out


def test_foreign_names_in_messages_stay_on_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A typed --subscription or a foreign table name holding a newline or an escape sequence is shown escaped:
    the error stays one line and nothing reaches the terminal raw."""
    import sqlite3

    monkeypatch.chdir(tmp_path)
    rc, _, err = run_main(["scan", "--from", str(DEMO), "--subscription", "a\nb\x1b[31m"], capsys)
    assert_one_line(rc, err, "not a subscription id")
    assert "\x1b" not in err
    db = tmp_path / "other.db"
    other = sqlite3.connect(db)
    other.execute('CREATE TABLE "evil\nname\x1b[2J" (x)')
    other.commit()
    other.close()
    rc, _, err = run_main(["findings", "--config", str(_state_config(tmp_path, db))], capsys)
    assert_one_line(rc, err, "not a plmon state store")
    assert "\x1b" not in err


def test_serve_without_blob_access_is_one_line_naming_the_way_out(
        tenant: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A Table store whose blob endpoint does not answer (an upgrade without blob access): plmon serve stops before
    listening, in one line with the hint to turn the shared inventory off, exit 2."""
    import re

    import azurite

    conn = azurite.connection_string()
    no_blob = re.sub(r"BlobEndpoint=http://[^/;]+", "BlobEndpoint=http://127.0.0.1:9", conn)
    monkeypatch.setenv("PLMON_TEST_NO_BLOB", no_blob)
    url = f"azuretables:///{azurite.unique_prefix()}?connection_string_env=PLMON_TEST_NO_BLOB"
    cfg = tmp_path / "plmon.yaml"
    cfg.write_text(f"state: {{url: \"{url}\"}}\n")
    rc, out, err = run_main(["serve", "--from", str(tenant), "--config", str(cfg), "--host", "127.0.0.1",
                             "--port", "0"], capsys)
    assert_one_line(rc, err, "scale:", "or set scale.shared_inventory: false")
    assert out == ""
