"""`formarket login`, `keys`, `invoices` and `logout` against a served control plane and the
GitHub stand-in: the device flow, the key kept 0600, keys made, listed and revoked, invoices
listed and saved."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from formarket.cli import main
from formarket.process import Runner
from tests.control.conftest import Plane
from tests.control.invoicing import PERIOD, close_month
from tests.control.test_subscriptions import LISTING as SUBSCRIBED
from tests.control.test_subscriptions import _credit, _priced_in_usd
from tests.deploy.conftest import make_market
from tests.gateway.helpers import Client


def _run(args: list[str], config: Path, env: dict[str, str] | None = None) -> Result:
    given = {"XDG_CONFIG_HOME": str(config), "FORMARKET_CONTROL_URL": "", **(env or {})}
    return CliRunner().invoke(main, args, env=given)


def _enter_code_as(plane: Plane, login: str) -> threading.Thread:
    """A person who enters the code the CLI shows, once it shows one."""

    def person() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            for code in plane.github.oauth.pending():
                plane.github.oauth.approve(code, login)
                return
            time.sleep(0.02)

    thread = threading.Thread(target=person, daemon=True)
    thread.start()
    return thread


def _login(plane: Plane, config: Path, who: str) -> Result:
    plane.github.oauth.interval = 0
    person = _enter_code_as(plane, who)
    result = _run(["login", "--control-url", plane.url], config)
    person.join(5)
    return result


def test_login_keys_and_logout(plane: Plane, tmp_path: Path) -> None:
    config = tmp_path / "config"
    result = _login(plane, config, "alice")
    assert result.exit_code == 0, result.output
    assert "enter the code" in result.output
    kept = config / "formarket" / "credentials.json"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    credentials = json.loads(kept.read_text())
    assert credentials["account"] == "alice"
    assert plane.call(credentials["key"], "GET", "/v1/keys").status == 200

    made = _run(["keys", "create", "--name", "ci", "--expires-in", "30"], config)
    assert made.exit_code == 0, made.output
    new_key = made.stdout.strip()
    assert plane.call(new_key, "GET", "/v1/keys").status == 200
    listed = json.loads(_run(["keys", "list", "--json"], config).stdout)["keys"]
    assert len(listed) == 2
    assert new_key not in json.dumps(listed)
    ci = next(k for k in listed if k["name"] == "ci")
    assert ci["expires_at"] is not None
    assert _run(["keys", "revoke", ci["id"]], config).exit_code == 0
    assert plane.call(new_key, "GET", "/v1/keys").status == 401

    assert _run(["logout"], config).exit_code == 0
    assert not kept.exists()
    assert plane.call(credentials["key"], "GET", "/v1/keys").status == 401
    signed_out = _run(["keys", "list"], config)
    assert signed_out.exit_code == 2
    assert "formarket login" in signed_out.output


def test_revoking_someone_elses_key_id_is_not_found(plane: Plane, tmp_path: Path) -> None:
    bob = plane.sign_in("bob")
    bob_key_id = plane.call(bob, "GET", "/v1/keys").json()["keys"][0]["id"]
    config = tmp_path / "config"
    assert _login(plane, config, "alice").exit_code == 0
    result = _run(["keys", "revoke", bob_key_id], config)
    assert result.exit_code == 1
    assert plane.call(bob, "GET", "/v1/keys").status == 200


def test_a_control_plane_without_github_sign_in_says_so(tmp_path: Path) -> None:
    result = _run(["login", "--control-url", "http://127.0.0.1:9"], tmp_path)
    assert result.exit_code == 1
    assert "Traceback" not in result.output


def test_control_serve_runs_as_its_own_process(tmp_path: Path) -> None:
    market = make_market(tmp_path / "market")
    log = tmp_path / "control.log"
    env = {
        **os.environ,
        "FORMARKET_GITHUB_CLIENT_ID": "cli-app",
        "GITHUB_SERVER_URL": "http://127.0.0.1:9",
        "FORMARKET_DATABASE_URL": f"sqlite:///{tmp_path / 'accounts.sqlite'}",
    }
    argv = [sys.executable, "-m", "formarket", "control", "serve", "--repo", str(market.repo)]
    with log.open("wb") as output:
        started = Runner().start([*argv, "--port", "0"], output=output, env=env)
    try:
        url = ""
        deadline = time.monotonic() + 60
        while not url and time.monotonic() < deadline and started.poll() is None:
            url = next((w for w in log.read_text().split() if w.startswith("http://")), "")
            time.sleep(0.05)
        assert url, log.read_text()
        config = Client(url).request("GET", "/v1/login/config").json()
        assert config == {"client_id": "cli-app", "server_url": "http://127.0.0.1:9"}
        assert Client(url).request("GET", "/v1/keys").status == 401
    finally:
        started.stop(grace=10)


def test_signed_in_and_outside_a_clone_deployments_and_usage_go_through_the_api(
    plane: Plane, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config"
    assert _login(plane, config, "alice").exit_code == 0
    key = json.loads((config / "formarket" / "credentials.json").read_text())["key"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # no clone here: client mode
    env = {"FORMARKET_REPO": ""}
    for command in (["deploy"], ["deployments", "list"], ["usage", "show"]):
        helped = _run([*command, "--help"], config, env)
        said = " ".join(helped.output.split())
        assert f"client mode (signed in; the control plane at {plane.url})" in said
    dry = _run(["deploy", "--model", "tinyforge/echo-chat", "--dry-run"], config, env)
    assert dry.exit_code == 0, dry.output
    assert "Dry run: nothing was committed." in dry.output
    made = _run(["deploy", "--model", "tinyforge/echo-chat", "--json"], config, env)
    assert made.exit_code == 0, made.output
    dep = json.loads(made.stdout)["deployments"][0]["id"]
    assert plane.call(key, "GET", f"/v1/deployments/{dep}").json()["desired"]["requester"] == (
        plane.control.pseudonyms.of("alice")
    )
    refused = _run(["deploy", "--model", "nobody/nothing"], config, env)
    assert refused.exit_code == 1
    listed = _run(["deployments", "list", "--json"], config, env)
    assert listed.exit_code == 0, listed.output
    assert [d["id"] for d in json.loads(listed.stdout)["deployments"]] == [dep]
    shown = _run(["deployments", "show", dep], config, env)
    assert "tinyforge/echo-chat" in shown.output
    usage = _run(["usage", "show", "--json"], config, env)
    assert json.loads(usage.stdout) == {
        "account": "alice",
        "pseudonym": plane.control.pseudonyms.of("alice"),
        "rows": [],
    }
    upgraded = _run(["deployments", "upgrade", dep, "--dry-run"], config, env)
    assert upgraded.exit_code == 0, upgraded.output
    assert f"{dep} runs tinyforge/echo-chat@1.1.0 already" in upgraded.output
    stopped = _run(["deployments", "stop", dep], config, env)
    assert stopped.exit_code == 0
    assert f"{dep} stopped" in stopped.output
    assert plane.call(key, "GET", f"/v1/deployments/{dep}").json()["actual"] == "stopped"
    # Bob's id from Alice's machine: not found, nothing stopped.
    bob = plane.sign_in("bob")
    bobs = plane.call(bob, "POST", "/v1/deployments", {"model": "tinyforge/echo-chat"}).json()
    bob_dep = bobs["deployments"][0]["id"]
    assert _run(["deployments", "stop", bob_dep], config, env).exit_code == 1
    assert plane.call(bob, "GET", f"/v1/deployments/{bob_dep}").json()["actual"] != "stopped"
    # With --repo, operator mode: the clone is read, whoever is signed in.
    monkeypatch.chdir(plane.market.repo)
    said = " ".join(_run(["deploy", "--help"], config).output.split())
    assert "operator mode (this folder is in a clone)" in said
    operator = _run(["deployments", "list", "--all", "--repo", str(plane.market.repo)], config)
    assert operator.exit_code == 0, operator.output
    assert bob_dep in operator.output


def test_invoices_are_listed_and_saved_as_the_bytes_git_has_the_hash_of(
    plane: Plane, tmp_path: Path
) -> None:
    config = tmp_path / "config"
    assert _login(plane, config, "alice").exit_code == 0
    plane.sign_in("bob")
    assert "no invoices yet" in _run(["invoices", "list"], config).output
    close_month(plane.control, {"alice": 3, "bob": 1}, {"alice": Decimal("20.00")})
    stored = plane.control.invoices.body("alice", PERIOD)
    assert stored is not None
    digest = hashlib.sha256(stored).hexdigest()

    listed = _run(["invoices", "list"], config)
    assert listed.exit_code == 0, listed.output
    assert f"{PERIOD}  usage USD 2.40  closing balance USD 17.60  sha256 {digest}" in (
        listed.output
    )
    (entry,) = json.loads(_run(["invoices", "list", "--json"], config).stdout)["invoices"]
    assert entry["sha256"] == digest

    saved = tmp_path / "out" / f"invoice-{PERIOD}.json"
    saved.parent.mkdir()
    got = _run(["invoices", "get", PERIOD, "-o", str(saved)], config)
    assert got.exit_code == 0, got.output
    assert saved.read_bytes() == stored
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600  # private, as the invoice is
    assert digest in got.stderr
    printed = _run(["invoices", "get", PERIOD], config)
    assert printed.stdout_bytes == stored

    # Periods that are none are refused here; a period with no invoice of alice's is not
    # found at the control plane; neither writes a file.
    for period, code in (("2026-13", 2), ("../2026-03", 2), ("2026-3", 2), ("2026-04", 1)):
        refused = _run(["invoices", "get", period, "-o", str(tmp_path / "x.json")], config)
        assert refused.exit_code == code, (period, refused.output)
        assert "Traceback" not in refused.output
        assert not (tmp_path / "x.json").exists()
    assert _run(["logout"], config).exit_code == 0
    signed_out = _run(["invoices", "list"], config)
    assert signed_out.exit_code == 2
    assert "formarket login" in signed_out.output


def test_subscriptions_are_made_listed_and_cancelled_from_the_command_line(
    plane: Plane, tmp_path: Path
) -> None:
    config = tmp_path / "config"
    assert _login(plane, config, "alice").exit_code == 0
    assert "no subscriptions" in _run(["subscriptions", "list"], config).output
    _priced_in_usd(plane)
    short = _run(["subscriptions", "add", SUBSCRIBED, "Hobby"], config)
    assert short.exit_code == 1
    assert "balance" in short.output
    _credit(plane, "alice", "10.00")
    made = _run(["subscriptions", "add", SUBSCRIBED, "Hobby"], config)
    assert made.exit_code == 0, made.output
    assert f"{SUBSCRIBED} Hobby  active  9" in made.output
    assert "requests 0 of 500 used or in use" in made.output
    (sub,) = json.loads(_run(["subscriptions", "list", "--json"], config).stdout)["subscriptions"]
    cancelled = _run(["subscriptions", "cancel", sub["id"]], config)
    assert cancelled.exit_code == 0, cancelled.output
    assert "cancelled" in cancelled.output
    unknown = _run(["subscriptions", "cancel", "sub_" + "0" * 24], config)
    assert unknown.exit_code == 1
    assert "Traceback" not in unknown.output
