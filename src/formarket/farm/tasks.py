"""The farm's tasks: thin, by name, ids in and ids out; the work is in plain functions.

    formarket.build(listing_id, version) -> build id     building.build_listing
    formarket.deploy(deployment_id, host) -> endpoint    operations.deploy
    formarket.stop(deployment_id, host) -> stopped or not  operations.stop (host None: all)
    formarket.reconcile() -> summary                     operations.reconcile (beat runs it)
    formarket.ping(x) -> x                               health checks and benchmarks

Every task is idempotent (a build is keyed by its build id, a deployment by its id), so a task
that runs twice after its worker died does no harm. A transient failure (farm.errors) is
retried with exponential backoff; anything else fails the task at once with its message.
A build reports each step as a PROGRESS state: `AsyncResult(id).info == {"step": ...}`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from celery import Celery, Task

from formarket.farm import operations
from formarket.farm.building import build_listing
from formarket.farm.errors import backoff, is_transient
from formarket.farm.settings import FarmSettings

__all__ = ["PROGRESS", "TIME_LIMITS", "register_tasks"]

PROGRESS = "PROGRESS"
# Soft limits in seconds (the task is told, and cleans up); the hard limit kills the process
# GRACE seconds later. A build's own limit comes from the settings.
TIME_LIMITS = {"deploy": 900, "stop": 300, "wake": 240, "reconcile": 600, "ping": 30}
GRACE = 60
T = TypeVar("T")


def _retrying(task: Task[Any, Any], work: Callable[[], T]) -> T:
    """Run `work`; on a transient error, schedule this task again after a growing delay."""
    try:
        return work()
    except Exception as exc:
        if not is_transient(exc):
            raise
        raise task.retry(exc=exc, countdown=backoff(task.request.retries)) from exc


def register_tasks(app: Celery, settings: FarmSettings) -> None:
    """Register the farm's tasks on `app`; they work with `settings`.

    `shared=False` everywhere: Celery otherwise adds every task to every app made later in
    the process, where it would run with the first app's settings."""

    @app.task(
        shared=False,
        name="formarket.build",
        bind=True,
        ignore_result=False,
        # Enough retries to outwait another worker's build of the same id (2 s doubling to
        # 300 s: about an hour and a half in all); after that the reconciler asks again.
        max_retries=24,
        soft_time_limit=settings.build_time_limit,
        time_limit=settings.build_time_limit + GRACE,
    )
    def build(self: Task[Any, Any], listing_id: str, version: str) -> str:
        def progress(step: str, detail: str) -> None:
            self.update_state(state=PROGRESS, meta={"step": step, "detail": detail})

        # wait=False: while another worker builds this id, retry later rather than hold a slot.
        manifest = _retrying(
            self, lambda: build_listing(settings, listing_id, version, progress, wait=False)
        )
        return manifest.build_id

    @app.task(
        shared=False,
        name="formarket.deploy",
        bind=True,
        ignore_result=False,
        max_retries=8,
        soft_time_limit=TIME_LIMITS["deploy"],
        time_limit=TIME_LIMITS["deploy"] + GRACE,
    )
    def deploy(self: Task[Any, Any], deployment_id: str, host: str) -> str:
        return _retrying(self, lambda: operations.deploy(settings, deployment_id, host))

    @app.task(
        shared=False,
        name="formarket.stop",
        bind=True,
        ignore_result=False,
        max_retries=8,
        soft_time_limit=TIME_LIMITS["stop"],
        time_limit=TIME_LIMITS["stop"] + GRACE,
    )
    def stop(
        self: Task[Any, Any], deployment_id: str, host: str | None = None, slot: int | None = None
    ) -> bool:
        return _retrying(self, lambda: operations.stop(settings, deployment_id, host, slot=slot))

    @app.task(
        shared=False,
        name="formarket.wake",
        bind=True,
        ignore_result=False,
        max_retries=4,
        soft_time_limit=TIME_LIMITS["wake"],
        time_limit=TIME_LIMITS["wake"] + GRACE,
    )
    def wake(self: Task[Any, Any], deployment_id: str, host: str | None = None) -> str:
        return _retrying(self, lambda: operations.wake_deployment(settings, deployment_id, host))

    @app.task(
        shared=False,
        name="formarket.reconcile",
        bind=True,
        # Beat runs it every few seconds and nobody reads its answer; the next run supersedes
        # a failed one, so it retries only briefly.
        ignore_result=True,
        max_retries=2,
        soft_time_limit=TIME_LIMITS["reconcile"],
        time_limit=TIME_LIMITS["reconcile"] + GRACE,
    )
    def reconcile(self: Task[Any, Any]) -> dict[str, Any]:
        # Its actions go to the queues of the app that runs it.
        enqueue = operations.celery_enqueue(app)
        return _retrying(self, lambda: operations.reconcile(settings, enqueue))

    @app.task(
        shared=False,
        name="formarket.ping",
        ignore_result=False,
        soft_time_limit=TIME_LIMITS["ping"],
        time_limit=TIME_LIMITS["ping"] + GRACE,
    )
    def ping(x: Any) -> Any:
        return x
