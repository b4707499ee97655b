"""The whole journey with real parts: a git remote that every party pushes to and pulls from,
a private Redis, two `formarket farm worker` processes with separate queues, a private
libvirtd running qemu, the gateway as its own process over HTTP, `formarket usage flush` and
the royalty close, and the site built from a maintainer's clone.

    developer: clone, add a listing on a branch, push      -> the PR check passes, merged
    farm machine: clone; a CLI request and an issue request committed by the bot, pushed
    farm: reconcile cycles hand builds to the build worker and deploys to the deploy worker
    gateway: calls over HTTP to both agents; usage flushed and pushed
    maintainer: pull, close the month, push; a fresh clone verifies it; the site shows it
    stop: deployments stopped in git; the farm removes every VM
"""

from __future__ import annotations

import io
import os
import re
import shutil
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx  # noqa: TID251 - the gateway is called as a user calls it
import pytest
import yaml
from dulwich import porcelain
from dulwich.refs import Ref
from dulwich.repo import Repo

from formarket.demo.requests import demo_requests
from formarket.errors import FormarketError
from formarket.farm import operations, status
from formarket.farm.celery_app import make_app
from formarket.farm.desired import read_deployments, set_state
from formarket.farm.hosts import Host
from formarket.farm.libvirt_conn import Connections
from formarket.farm.libvirtd import ensure_libvirtd, local_host
from formarket.farm.settings import FarmSettings
from formarket.market.governance import bot_identity
from formarket.market.writer import Identity, commit_changes, import_tree
from formarket.process import Runner
from formarket.registry.cache import ResultCache, code_digest
from formarket.registry.findings import Severity
from formarket.registry.pr_check import check_pull_request
from formarket.royalties import engine
from formarket.site.build import build_site
from tests.builder.conftest import shared_cache
from tests.farm_libvirt.real import qemu_processes
from tests.farm_queue.conftest import Worker
from tests.redis_server import RedisServer, free_port

ROOT = Path(__file__).parent.parent
QUIET = io.BytesIO

pytestmark = [
    pytest.mark.slow,
    pytest.mark.xdist_group("vm-journeys"),  # the journeys boot four VMs each: one at a time
    pytest.mark.skipif(os.geteuid() != 0, reason="image builds need root"),
]


opened: list[Repo] = []


def clone(origin: Path, target: Path) -> Repo:
    repo = porcelain.clone(str(origin), str(target), errstream=QUIET())
    opened.append(repo)
    return repo


def push(repo: Repo, origin: Path, branch: str = "main") -> None:
    porcelain.push(repo, str(origin), f"refs/heads/{branch}", outstream=QUIET(), errstream=QUIET())


def pull(repo: Repo, origin: Path) -> None:
    porcelain.pull(repo, str(origin), "refs/heads/main", outstream=QUIET(), errstream=QUIET())


def until(what: str, timeout: float, tick: Callable[[], bool]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if tick():
            return
        time.sleep(1.0)
    raise AssertionError(f"timed out after {timeout}s: {what}")


def formarket(*args: str, env: dict[str, str] | None = None) -> str:
    result = Runner().run(
        [sys.executable, "-m", "formarket", *args], env={**os.environ, **(env or {})}
    )
    return result.stdout


def test_the_whole_journey_with_real_parts(
    tmp_path: Path, redis_server: RedisServer, libvirt_workdir: Path
) -> None:
    # The marketplace's remote, holding the starter registry.
    origin = tmp_path / "origin.git"
    bare = Repo.init_bare(str(origin), mkdir=True)
    opened.append(bare)
    maintainer = Identity("mara-maintainer", "mara@example.org")
    commit_changes(
        bare,
        "main",
        import_tree(ROOT, ("registry", "builder", "royalties", "schemas")),
        "Start the marketplace",
        maintainer,
    )
    bare.refs.set_symbolic_ref(Ref(b"HEAD"), Ref(b"refs/heads/main"))

    # A developer adds a listing on a branch and pushes it; the check passes; it is merged.
    dev = clone(origin, tmp_path / "dev")
    source = Path(dev.path) / "registry/models/tinyforge/echo-chat"
    target = Path(dev.path) / "registry/models/tinyforge/echo-parrot"
    shutil.copytree(source, target)
    listing = yaml.safe_load((target / "listing.yaml").read_text())
    listing.update(id="tinyforge/echo-parrot", name="Echo Parrot", version="0.1.0")
    (target / "listing.yaml").write_text(yaml.safe_dump(listing, sort_keys=False))
    formfile = (target / "Formfile").read_text().replace("NAME echo-chat", "NAME echo-parrot")
    (target / "Formfile").write_text(formfile)
    porcelain.add(dev, [str(p) for p in target.rglob("*") if p.is_file()])
    porcelain.branch_create(dev, "pr-1")
    porcelain.checkout(dev, "pr-1")
    porcelain.commit(
        dev,
        b"Add tinyforge/echo-parrot",
        author=b"tf-sam <sam@example.org>",
        committer=b"tf-sam <sam@example.org>",
    )
    push(dev, origin, "pr-1")
    report = check_pull_request(bare, "main", "pr-1", "tf-sam", ResultCache(None, code_digest()))
    assert not [f for f in report.findings if f.severity is Severity.ERROR], report.findings
    bare.refs[Ref(b"refs/heads/main")] = bare.refs[Ref(b"refs/heads/pr-1")]

    # The farm's machine: a clone of the remote, its hosts, Redis, two workers.
    farm_repo = clone(origin, tmp_path / "farm-clone")
    ensure_libvirtd(libvirt_workdir)
    host = local_host(libvirt_workdir, vcpus=8, memory_mib=8192)
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text(yaml.safe_dump({"hosts": [host.model_dump(mode="json")]}))
    # Agents are forwarded to the gateway's address when they start; it listens by their calls.
    port = free_port()
    environ = {
        "FORMARKET_REPO": farm_repo.path,
        "FORMARKET_STATE": str(tmp_path / "farm"),
        "FORMARKET_BASE_CACHE": str(shared_cache()),
        "FORMARKET_BROKER_URL": redis_server.url,
        "FORMARKET_HOSTS": str(hosts),
        "FORMARKET_GATEWAY_DIR": str(tmp_path / "gateway"),
        "FORMARKET_GATEWAY_URL": f"http://127.0.0.1:{port}",
    }
    settings = FarmSettings.from_env(tmp_path, environ)
    os.environ["FORMARKET_GATEWAY_DIR"] = environ["FORMARKET_GATEWAY_DIR"]
    builds, deploys = Worker(settings, ["build"]), Worker(settings, ["deploy"])
    pool = Connections()
    gateway = None
    try:
        # Users ask for the FAQ bot with the new model: by an issue and by the CLI.
        requested = demo_requests(
            Path(farm_repo.path), lambda _l: None, settings=settings, model="tinyforge/echo-parrot"
        )
        push(farm_repo, origin)
        desired = read_deployments(farm_repo)
        agents = [desired[d] for d in requested if desired[d].kind == "agent"]
        assert len(requested) == 4
        assert len(agents) == 2

        enqueue = operations.celery_enqueue(make_app(settings))

        def routed() -> bool:
            operations.reconcile_once(settings, enqueue, pool=pool)
            return all(status.endpoint(settings, d) for d in requested)

        until("all four deployments answering", 300, routed)
        assert len(qemu_processes(requested)) == 4

        # The gateway, as its own process, over HTTP.
        gateway = Runner().start(
            [
                sys.executable,
                "-m",
                "formarket",
                "gateway",
                "serve",
                "--repo",
                farm_repo.path,
                "--port",
                str(port),
                "--source",
                "gateway/it-1",
            ],
            env={**os.environ, **environ},
        )
        url = f"http://127.0.0.1:{port}"
        until("the gateway to listen", 30, lambda: _answers(url))
        for agent in agents:
            created = formarket(
                "gateway", "keys", "create", agent.account, "--repo", farm_repo.path, env=environ
            )
            key = re.findall(r"\bfmk_\S+", created)[0]
            auth = {"Authorization": f"Bearer {key}"}
            # The gateway notices a new key within a second (it re-reads keys.json on change).
            until(
                "the gateway to know the key",
                10,
                lambda auth=auth: httpx.get(f"{url}/v1/models", headers=auth).status_code == 200,
            )
            for n in range(5):
                for _attempt in range(4):  # a busy TCG VM drops a connection now and then
                    reply = httpx.post(
                        f"{url}/v1/chat/completions",
                        headers=auth,
                        json={
                            "model": agent.id,
                            "messages": [{"role": "user", "content": f"purple giraffes {n}"}],
                        },
                        timeout=60,
                    )
                    if reply.status_code != 502:
                        break
                assert reply.status_code == 200, reply.text
                assert "purple giraffes" in reply.json()["choices"][0]["message"]["content"]
        gateway.stop(grace=10)  # SIGTERM seals the spool
        gateway = None
        operations.reconcile_once(settings, enqueue, pool=pool)  # meters instance-hours
        flushed = formarket("usage", "flush", "--repo", farm_repo.path, env=environ)
        counts = [int(n) for n in re.findall(r"\b(\d+) events?\b", flushed)]
        assert sum(counts) >= 20, flushed  # ten calls, ten model calls, the VMs' running time
        push(farm_repo, origin)

        # A maintainer pulls, closes the month, pushes; a fresh clone verifies it.
        keeper = clone(origin, tmp_path / "maintainer")
        pull(keeper, origin)
        now = datetime.now(UTC)
        next_month = datetime(now.year + now.month // 12, now.month % 12 + 1, 2, tzinfo=UTC)
        period = f"{now:%Y-%m}"
        _computed, commit = engine.close(keeper, period, commit=True, now=next_month)
        assert commit is not None
        keeper.get_worktree().reset_index()
        push(keeper, origin)
        checker = clone(origin, tmp_path / "checker")
        assert engine.verify(checker, period) == []
        statement = (Path(checker.path) / f"royalties/{period}/statements/tinyforge.md").read_text()
        assert "tinyforge/faq-bot" in statement

        # The site, from the maintainer's clone, charts the usage and the earnings.
        site = tmp_path / "site"
        build_site(Path(checker.path), site, echo=lambda _l: None)
        page = (site / "agents/tinyforge/faq-bot/index.html").read_text()
        assert "<svg" in page.split('id="usage"', 1)[1][:4000]
        owner = (site / "publishers/tinyforge/index.html").read_text()
        assert "<svg" in owner.split('id="earnings"', 1)[1][:4000]

        # Stopped in git (and pushed): the farm removes every VM.
        pull(farm_repo, origin)
        bot = bot_identity(farm_repo, "main")
        for dep in requested:
            set_state(farm_repo, "main", dep, "stopped", f"Stop {dep}", bot)
        push(farm_repo, origin)
        conn = pool.get(host)

        def gone() -> bool:
            operations.reconcile_once(settings, enqueue, pool=pool)
            return not conn.domains()

        until("every VM removed", 120, gone)
        assert not qemu_processes(requested)
    finally:
        os.environ.pop("FORMARKET_GATEWAY_DIR", None)
        if gateway is not None:
            gateway.stop(grace=2)
        for domain in _domains(pool, host):
            pool.get(host).destroy(domain)
        pool.close()
        builds.stop()
        deploys.stop()
        for repo in opened:
            repo.close()


def _answers(url: str) -> bool:
    try:
        httpx.get(f"{url}/v1/models", timeout=2)
    except httpx.HTTPError:
        return False
    return True


def _domains(pool: Connections, host: Host) -> list[str]:
    try:
        return [d.name for d in pool.get(host).domains()]
    except FormarketError:
        return []
