"""A listing's lifecycle with real parts: a private libvirtd running qemu, the gateway over HTTP
and the starter registry in git, the farm's actions run in this process.

    publish echo-chat 1.0.0; deploy the FAQ bot with it        -> both VMs answer
    publish 1.1.0; upgrade the model while a thread keeps calling it through the gateway
                                                              -> not one failed call; the new
                                                                 answers; the agent gets them
    publish a 1.2.0 that never answers; upgrade to it          -> the old VM serves on, not one
                                                                 failed call, the reason shown
    deprecate 1.0.0                                            -> a deploy of it warns
    yank 1.0.0                                                 -> a new deployment is refused
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx  # noqa: TID251 - the gateway is called as a user calls it
import pytest
import yaml
from click.testing import CliRunner
from dulwich.repo import Repo

from formarket.builder.vm import BOOT_MARKER
from formarket.cli import main
from formarket.deploy.lifecycle import upgrade
from formarket.deploy.request import DeployOptions, RefusedError, build_request, plan, run
from formarket.farm import operations, status, upgrades
from formarket.farm.libvirt_conn import Connections
from formarket.farm.libvirtd import ensure_libvirtd, local_host
from formarket.farm.report import actual_of, consoles
from formarket.farm.settings import FarmSettings
from formarket.gateway.config import GatewayConfig, StatePaths, default_state_dir
from formarket.gateway.keys import create_key
from formarket.gateway.routes import load_routes
from formarket.gateway.server import ServerThread, build_gateway
from formarket.market.writer import commit_changes, import_tree
from tests.builder.conftest import shared_cache
from tests.lifecycle import OWNER, listing_path, listing_text_at, publish

pytestmark = [
    pytest.mark.slow,
    pytest.mark.xdist_group("vm-journeys"),
    pytest.mark.skipif(os.geteuid() != 0, reason="building images needs root"),
]

ROOT = Path(__file__).parent.parent
ECHO = "tinyforge/echo-chat"
FOLDER = "registry/models/tinyforge/echo-chat"


def until(what: str, timeout: float, tick: Callable[[], bool]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if tick():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s: {what}")


class Caller:
    """Calls a deployment through the gateway, one call after another, until stopped; every
    answer and every failure is kept."""

    def __init__(self, url: str, key: str, deployment: str) -> None:
        self.url, self.key, self.deployment = url, key, deployment
        self.answers: list[str] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        with httpx.Client(timeout=60) as client:
            while not self._stop.is_set():
                n += 1
                body = {
                    "model": self.deployment,
                    "messages": [{"role": "user", "content": f"hi {n}"}],
                }
                try:
                    reply = client.post(
                        f"{self.url}/v1/chat/completions",
                        json=body,
                        headers={"Authorization": f"Bearer {self.key}"},
                    )
                except httpx.HTTPError as exc:
                    self.failures.append(f"call {n}: {exc!r}")
                    continue
                if reply.status_code != 200:
                    self.failures.append(f"call {n}: {reply.status_code} {reply.text[:200]}")
                    continue
                self.answers.append(reply.json()["choices"][0]["message"]["content"])
                time.sleep(0.05)

    def __enter__(self) -> Caller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(120)


@pytest.fixture
def market(tmp_path: Path) -> Iterator[Repo]:
    repo = Repo.init(str(tmp_path / "market"), mkdir=True)
    files = import_tree(ROOT, ("registry", "builder", "royalties"))
    path = listing_path(ECHO)
    files[path] = listing_text_at("1.0.0", ECHO, files[path] or b"")
    commit_changes(repo, "main", files, "Starter registry, echo-chat 1.0.0", OWNER)
    yield repo
    repo.close()


def _outcome(settings: FarmSettings, deployment: str) -> str | None:
    found = upgrades.load(settings.state).get(deployment)
    return found.outcome if found is not None else None


def publish_changed(repo: Repo, version: str, changes: dict[str, bytes]) -> None:
    """A merged pull request that changes the listing's files and bumps its version."""
    commit_changes(repo, "main", changes, f"echo-chat: files of {version}", OWNER)
    publish(repo, ECHO, version)


def test_publish_deploy_upgrade_without_a_failed_call_deprecate_and_yank(
    tmp_path: Path, market: Repo, libvirt_workdir: Path
) -> None:
    ensure_libvirtd(libvirt_workdir)
    host = local_host(libvirt_workdir, vcpus=8, memory_mib=8192)
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text(yaml.safe_dump({"hosts": [host.model_dump(mode="json")]}))
    state = StatePaths(default_state_dir(Path(market.path)))
    gateway = ServerThread(build_gateway(GatewayConfig(state, source="gateway/test"))).start()
    settings = FarmSettings.from_env(
        tmp_path,
        {
            "FORMARKET_REPO": market.path,
            "FORMARKET_STATE": str(tmp_path / "farm"),
            "FORMARKET_BASE_CACHE": str(shared_cache()),
            "FORMARKET_HOSTS": str(hosts),
            "FORMARKET_GATEWAY_URL": gateway.url,
        },
    )
    pool = Connections()
    here = operations.run_here(settings, pool, health_timeout=25.0)

    def cycle() -> None:
        operations.reconcile_once(settings, here, pool=pool, meter=False)

    def settled(check: Callable[[], bool]) -> Callable[[], bool]:
        def tick() -> bool:
            cycle()
            return check()

        return tick

    try:
        # 1.0.0, deployed with the FAQ bot in front of it.
        planned = run(
            settings,
            DeployOptions(
                agent="tinyforge/faq-bot",
                model=f"{ECHO}@1.0.0",
                sets=("handoff_message=nobody knows",),
                account="ada",
                requester="ada",
            ),
            echo=lambda _line: None,
        )
        model, agent = (d.id for d in planned.resolved.deployments)
        until("both routed", 240, settled(lambda: bool(status.endpoint(settings, agent))))
        key, _record = create_key(state.keys, "ada")
        with httpx.Client(timeout=60) as client:
            until(
                "the gateway to know the key",
                10,
                lambda: (
                    client.get(
                        f"{gateway.url}/v1/models", headers={"Authorization": f"Bearer {key}"}
                    ).status_code
                    == 200
                ),
            )
        (log,) = consoles(settings, model, pool)
        assert BOOT_MARKER.decode() in log.boot

        # 1.1.0 answers differently; the upgrade happens while calls keep flowing.
        handler = (ROOT / FOLDER / "app/handler.sh").read_bytes()
        newer = handler.replace(b'answer="You said: $said"', b'answer="Echo 1.1 heard: $said"')
        assert newer != handler
        publish_changed(market, "1.1.0", {f"{FOLDER}/app/handler.sh": newer})
        first_route = load_routes(state.routes).routes
        with Caller(gateway.url, key, model) as caller:
            until("calls flowing", 30, lambda: len(caller.answers) >= 3)
            done = upgrade(settings, model)
            assert done.new.listing.version == "1.1.0"
            until(
                "the upgrade",
                240,
                settled(lambda: model in upgrades.load(settings.state)),
            )
            until("new answers", 30, lambda: "Echo 1.1 heard" in (caller.answers or [""])[-1])
        assert not caller.failures, caller.failures
        assert any(a.startswith("You said") for a in caller.answers)
        assert upgrades.load(settings.state)[model].outcome == "done"
        routes = {r.deployment: r for r in load_routes(state.routes).routes}
        assert routes[model].model is not None
        assert routes[model].model.version == "1.1.0"
        assert routes[model].endpoint not in {r.endpoint for r in first_route}
        actual = actual_of(operations.observe((host,), pool), model)
        assert [(vm["version"], vm["slot"], vm["running"]) for vm in actual["vms"]] == [
            ("1.1.0", 1, True)
        ]
        # The agent calls its model through the gateway: it gets the new version's answers.
        reply = httpx.post(
            f"{gateway.url}/v1/chat/completions",
            json={"model": agent, "messages": [{"role": "user", "content": "purple giraffes"}]},
            headers={"Authorization": f"Bearer {key}"},
            timeout=60,
        )
        assert reply.status_code == 200, reply.text
        assert "Echo 1.1 heard" in reply.json()["choices"][0]["message"]["content"]

        # A 1.2.0 whose service never starts: the upgrade fails, 1.1.0 serves on.
        formfile = (ROOT / FOLDER / "Formfile").read_text()
        broken = formfile.replace(
            "ENTRYPOINT nc -ll -p 8080 -e sh /srv/app/handler.sh", "ENTRYPOINT sleep 9999"
        )
        assert broken != formfile
        publish_changed(market, "1.2.0", {f"{FOLDER}/Formfile": broken.encode()})
        with Caller(gateway.url, key, model) as caller:
            upgrade(settings, model)
            until(
                "the failed upgrade",
                240,
                settled(lambda: _outcome(settings, model) == "failed"),
            )
            cycle()  # not tried again
            count = len(caller.answers)
            until("calls after it", 30, lambda: len(caller.answers) > count + 2)
        assert not caller.failures, caller.failures
        assert all("Echo 1.1 heard" in a for a in caller.answers)
        failed = upgrades.load(settings.state)[model]
        assert (failed.old, failed.new) == ("1.1.0", "1.2.0")
        assert "did not answer" in failed.reason
        actual = actual_of(operations.observe((host,), pool), model)
        assert [(vm["version"], vm["running"]) for vm in actual["vms"]] == [("1.1.0", True)]
        assert "failed" in status.progress(settings, model)
        # As a person sees it: desired and actual apart, why the upgrade failed, the logs.
        env = {
            "FORMARKET_REPO": market.path,
            "FORMARKET_STATE": str(settings.state),
            "FORMARKET_HOSTS": str(hosts),
        }
        shown = CliRunner().invoke(main, ["deployments", "show", model], env=env)
        assert shown.exit_code == 0, shown.output
        assert "desired:           running, version 1.2.0 (git)" in shown.output
        assert "actual:            running (1.1.0) (libvirt)" in shown.output
        assert "did not answer" in shown.output
        logs = CliRunner().invoke(main, ["deployments", "logs", model], env=env)
        assert logs.exit_code == 0, logs.output
        assert BOOT_MARKER.decode() in logs.output.split("-- service")[0]

        # Deprecated: still deployable, with the owners' word. Yanked: refused.
        publish(market, ECHO, "1.2.0", marks={"1.0.0": ("deprecated", "use 1.1.0")})
        options = DeployOptions(model=f"{ECHO}@1.0.0", account="bo", requester="bo")
        warned = plan(settings, build_request(options, status.farm_pseudonyms(settings)))
        assert warned.resolved.warnings == (f"model {ECHO}@1.0.0 is deprecated: use 1.1.0",)
        publish(market, ECHO, "1.2.0", marks={"1.0.0": ("yanked", "it leaks prompts")})
        with pytest.raises(RefusedError) as refused:
            run(settings, options, echo=lambda _line: None)
        assert "it leaks prompts" in refused.value.reasons[0]
    finally:
        for name in [d.name for d in pool.get(host).domains()]:
            pool.get(host).destroy(name)
        pool.close()
        gateway.stop()
