"""Running a deployment on a host: start it, upgrade it beside its old VM, stop it.

Each function is idempotent and reads what it needs from git (the desired deployments), the
host inventory and libvirt, so a task that runs twice does no harm.

An upgrade never leaves a deployment unanswered: the new version starts in the deployment's
other slot (`domain.instance_name`) while the old one serves, must answer its health check,
then the gateway's route moves to it (the gateway re-reads its routes within half a second),
calls already sent to the old VM get `drain` seconds to finish, and only then does the old VM
stop. A new VM that does not come up is removed, the old one serves on, and the reason is
kept in `upgrades.json` for `formarket deployments show`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from dulwich.repo import Repo

from formarket.builder.manifest import BuildManifest
from formarket.builder.store import DirectoryStore
from formarket.errors import FormarketError
from formarket.farm import deployer, image_index, status, upgrades
from formarket.farm.agentkeys import agent_key, drop_agent_key
from formarket.farm.building import build_listing
from formarket.farm.configdisk import resolve_secrets
from formarket.farm.desired import read_deployments
from formarket.farm.domain import GUEST_GATEWAY, DomainRecord
from formarket.farm.errors import TransientError
from formarket.farm.fleet import (
    Actual,
    agent_keys_path,
    connections,
    inventory,
    missing_devices_path,
    observe,
    routes_path,
)
from formarket.farm.gpus import DeviceMissing, missing_devices, remember_missing
from formarket.farm.hosts import Host
from formarket.farm.leases import open_leases
from formarket.farm.libvirt_conn import Connections, HostConnection, HostError
from formarket.farm.pricing import published_pricing
from formarket.farm.publish import (
    FREE,
    CallPrices,
    Tokenizers,
    call_prices,
    route_for,
    stock_tokenizers,
    tip_reader,
)
from formarket.farm.settings import FarmSettings, open_market
from formarket.farm.sleeping import SleepMarks
from formarket.farm.versions import Versions, versions_at
from formarket.gateway.routes import Route, load_routes, save_routes
from formarket.schemas.deployment import Deployment
from formarket.schemas.usage import ListingVersion

__all__ = ["DRAIN_SECONDS", "deploy", "image_key_of", "prices_of", "stop"]

_log = logging.getLogger("formarket.farm")
# How long calls already sent to an old VM get to finish once the route has moved: the gateway
# re-reads its routes every half second, so after this no new call reaches the old VM.
DRAIN_SECONDS = 2.0


def _published_manifest(
    settings: FarmSettings, store: DirectoryStore, deployment: Deployment
) -> BuildManifest | None:
    """The image the listing version builds to, when it is in the store already."""
    repo = open_market(settings)
    try:
        listing = deployment.listing
        key = image_key_of(repo, versions_at(repo, settings.branch), listing.id, listing.version)
    finally:
        repo.close()
    build_id = image_index.lookup(store, key) if key else None
    raw = store.manifest_bytes(build_id) if build_id else None
    return BuildManifest.model_validate_json(raw) if raw else None


def _model_access(settings: FarmSettings, deployment: Deployment, actual: Actual) -> dict[str, str]:
    """What an agent's VM is given to call its model: the gateway, as the VM sees it through
    its one forward, the key the farm made for it, and the model deployment to name."""
    model = deployment.model_deployment or ""
    if actual.find(model) is None:
        raise TransientError(
            f"{deployment.id}: its model deployment {model} is not running yet",
            hint="the reconciler deploys the agent once its model runs",
        )
    key = agent_key(agent_keys_path(settings), status.gateway_state(settings).keys, deployment)
    return {
        "MODEL_ENDPOINT": f"http://{GUEST_GATEWAY}",
        "MODEL_API_KEY": key.key,
        "MODEL_NAME": model,
    }


def _start(
    settings: FarmSettings,
    conn: HostConnection,
    host: Host,
    deployment: Deployment,
    manifest: BuildManifest,
    store: DirectoryStore,
    env: Mapping[str, str],
    slot: int,
) -> deployer.Started:
    """`deployer.start`, giving nobody the GPU devices found missing on the host lately, and
    noting those it finds missing now: the next cycle places the deployment again without
    them (see farm.gpus)."""
    missing = missing_devices_path(settings)
    try:
        return deployer.start(
            conn,
            host,
            deployment,
            manifest,
            store,
            env,
            gateway=settings.gateway_url,
            slot=slot,
            unavailable=missing_devices(missing).get(host.name, frozenset()),
        )
    except DeviceMissing as exc:
        remember_missing(missing, exc)
        raise


def deploy(
    settings: FarmSettings,
    deployment_id: str,
    host_name: str,
    *,
    pool: Connections | None = None,
    health_timeout: float = 180.0,
    drain: float = DRAIN_SECONDS,
) -> str:
    """Run a deployment on a host and wait until it answers; its endpoint ("" when git no
    longer wants it running). A VM of another version running there is upgraded beside it."""
    pool = pool or connections()
    repo = open_market(settings)
    try:
        desired = read_deployments(repo, settings.branch)
        tokenizers = stock_tokenizers(
            tip_reader(repo, settings.branch),
            desired,
            status.gateway_state(settings).root,
            versions_at(repo, settings.branch).reader,
        )
    finally:
        repo.close()
    deployment = desired.get(deployment_id)
    leases = open_leases(settings.broker_url or "", settings.state)
    try:
        if deployment is None or deployment.state != "running":
            _log.info("%s is not wanted running any more; nothing to deploy", deployment_id)
            return ""
        hosts = inventory(settings)
        host = hosts.host(host_name)
        actual = observe(hosts.hosts, pool)
        env = resolve_secrets(deployment.secrets)
        if deployment.kind == "agent" and deployment.model_deployment:
            env.update(_model_access(settings, deployment, actual))
        store = DirectoryStore(settings.store.absolute())
        manifest = _published_manifest(settings, store, deployment)
        if manifest is None:
            # The reconciler builds before it deploys; a deploy asked for directly builds here.
            listing = deployment.listing
            manifest = build_listing(settings, listing.id, listing.version)
        conn = pool.get(host)
        mine = actual.of(deployment_id)
        here = [record for name, record in mine if name == host_name]
        wanted = deployment.listing.version
        if not any(r.running and r.listing_version == wanted for _name, r in mine):
            # Another version serves (here, or on another host when this one had no room for
            # both): the new one starts beside it. The old one on this host first.
            serving = sorted((name != host_name, name) for name, r in mine if r.running)
            if serving:
                old_host = serving[0][1]
                old = next(r for name, r in mine if name == old_host and r.running)
                step = _Step(settings, conn, host, deployment, manifest, store, env, desired)
                old_conn = pool.get(hosts.host(old_host))
                return step.upgrade(old_conn, old, here, tokenizers, health_timeout, drain)
        slot = _slot(here, wanted)
        started = _start(settings, conn, host, deployment, manifest, store, env, slot)
        endpoint = started.endpoint or ""
        if endpoint and not conn.is_test:
            deployer.wait_healthy(endpoint, health_timeout)
        if endpoint:
            _add_route(
                settings,
                route_for(
                    deployment, endpoint, desired, tokenizers=tokenizers, prices=prices_of(settings)
                ),
            )
        if deployment.idle_after is not None:
            # Its idleness counts from here at least: it was not called before it ran.
            SleepMarks(settings.state).woke(deployment_id, datetime.now(UTC))
        _log.info("%s runs on %s at %s", deployment_id, host_name, endpoint or "(no port)")
        return endpoint
    finally:
        leases.release(f"deploy:{deployment_id}")


def _slot(here: list[DomainRecord], version: str) -> int:
    """The slot to (re)start a deployment in: where its version runs or was, else slot 0."""
    for record in sorted(here, key=lambda r: (not r.running, r.listing_version != version)):
        return record.slot
    return 0


def _routed(settings: FarmSettings, deployment_id: str) -> str | None:
    for route in load_routes(routes_path(settings)).routes:
        if route.deployment == deployment_id:
            return route.endpoint
    return None


class _Step:
    """One upgrade of one deployment on one host, from the VM that serves now."""

    def __init__(
        self,
        settings: FarmSettings,
        conn: HostConnection,
        host: Host,
        deployment: Deployment,
        manifest: BuildManifest,
        store: DirectoryStore,
        env: dict[str, str],
        desired: Mapping[str, Deployment],
    ) -> None:
        self.settings, self.conn, self.host = settings, conn, host
        self.deployment, self.manifest, self.store, self.env = deployment, manifest, store, env
        self.desired = desired

    def upgrade(
        self,
        old_conn: HostConnection,
        old: DomainRecord,
        here: list[DomainRecord],
        tokenizers: Tokenizers,
        health_timeout: float,
        drain: float,
    ) -> str:
        """Start the new version beside `old` (on `old_conn`'s host), route to it, stop `old`;
        `here` are the deployment's domains on this host."""
        dep = self.deployment
        new_version = dep.listing.version
        slot = 1 - old.slot if old_conn.name == self.conn.name else _slot(here, new_version)
        try:
            started = _start(
                self.settings, self.conn, self.host, dep, self.manifest, self.store, self.env, slot
            )
            endpoint = started.endpoint or ""
            if endpoint and not self.conn.is_test:
                deployer.wait_healthy(endpoint, health_timeout)
        except FormarketError as exc:
            # The old VM serves on; the new one goes, so nothing half-made stays behind.
            with contextlib.suppress(FormarketError):
                deployer.stop(self.conn, dep.id, slot)
            upgrades.note(
                self.settings.state, dep.id, old.listing_version, new_version, "failed", exc.message
            )
            _log.warning("%s stays at %s: %s", dep.id, old.listing_version, exc.message)
            return old.endpoint or ""
        if endpoint:
            prices = prices_of(self.settings)
            route = route_for(dep, endpoint, self.desired, tokenizers=tokenizers, prices=prices)
            self._switch(route, drain)
        deployer.stop(old_conn, dep.id, old.slot)
        if dep.idle_after is not None:
            # The new VM's idleness counts from now: no call has reached it yet.
            SleepMarks(self.settings.state).woke(dep.id, datetime.now(UTC))
        upgrades.note(self.settings.state, dep.id, old.listing_version, new_version, "done")
        _log.info("%s upgraded from %s to %s", dep.id, old.listing_version, new_version)
        return endpoint

    def _switch(self, route: Route, drain: float) -> None:
        """Route to the new VM and let calls to the old one drain. A reconcile cycle that
        read routes.json just before it was written may write its old copy back: the route is
        written again until it stays (the cycle keeps it once it has read it)."""
        for _attempt in range(5):
            _add_route(self.settings, route)
            time.sleep(drain)
            if _routed(self.settings, route.deployment) == route.endpoint:
                return
        raise TransientError(
            f"{route.deployment}: the route to its new VM did not stay in routes.json",
            hint="is more than one reconciler publishing routes? the deploy is retried",
        )


def prices_of(settings: FarmSettings) -> Callable[[ListingVersion], CallPrices]:
    """The prices of a call of listing versions, as each version was first published: the same
    price book the royalties rate calls with, so a deployment still running an older version
    reserves that version's prices. Read at most once per call of this, and only for a version
    this process has not priced yet (a published version's price never changes)."""
    pricing = published_pricing(settings)

    def prices(ref: ListingVersion) -> CallPrices:
        key = (str(settings.repo), ref.id, ref.version)
        found = _PRICES.get(key)
        if found is not None:
            return found
        terms = pricing(ref.id, ref.version)
        if terms is None:
            return FREE  # not published on the branch (yet): no price known
        found = _PRICES[key] = call_prices(terms)
        return found

    return prices


_PRICES: dict[tuple[str, str, str], CallPrices] = {}


def _add_route(settings: FarmSettings, route: Route) -> None:
    path = routes_path(settings)
    others = [r for r in load_routes(path).routes if r.deployment != route.deployment]
    save_routes(path, [*others, route])


def stop(
    settings: FarmSettings,
    deployment_id: str,
    host_name: str | None = None,
    *,
    pool: Connections | None = None,
    slot: int | None = None,
) -> bool:
    """Remove a deployment's domain from one host, or from every host that answers; with
    `slot`, only its VM in that slot (a second copy left by an upgrade that was cut short)."""
    pool = pool or connections()
    hosts = inventory(settings)
    targets = [hosts.host(host_name)] if host_name else list(hosts.hosts)
    removed = False
    leases = open_leases(settings.broker_url or "", settings.state)
    try:
        for host in targets:
            try:
                removed = deployer.stop(pool.get(host), deployment_id, slot) or removed
            except HostError as exc:
                if host_name:
                    raise
                pool.mark_down(host.name, str(exc))
        if host_name is None and slot is None:
            # Stopped everywhere: an agent's key goes with it. (A stop on one host may be a
            # second copy of a deployment that runs on; the reconciler sweeps the keys of
            # deployments git no longer wants.)
            drop_agent_key(
                agent_keys_path(settings), status.gateway_state(settings).keys, deployment_id
            )
        if removed and host_name is None and slot is None:
            path = routes_path(settings)
            kept = [r for r in load_routes(path).routes if r.deployment != deployment_id]
            save_routes(path, kept)
        return removed
    finally:
        suffix = "" if slot is None else f"/{slot}"
        for host in targets:
            leases.release(f"stop:{deployment_id}@{host.name}{suffix}")


def image_key_of(repo: Repo, versions: Versions, listing_id: str, version: str) -> str | None:
    """The image index key of a listing version: that of the commit that published it."""
    commit = versions.commit_of(listing_id, version)
    return image_index.image_key(repo, commit, listing_id) if commit is not None else None
