"""The farm's Celery app: two queues, late acknowledgement, and the reconciler on a beat.

    build    image builds: long, CPU-bound, one per worker process at a time
    deploy   deployments, stops and the periodic reconcile: short, talk to libvirt hosts

What survives a killed worker (see the lab notes): a task is acknowledged only when it has
finished (`acks_late`), is handed back when its process dies (`reject_on_worker_lost`), and a
worker takes one task at a time (prefetch 1, `-O fair`), so no task waits behind a long build in
a dead worker's buffer. When a whole worker dies, Redis hands its task to another worker after
the visibility timeout, which is longer than the longest build; every task is idempotent, so
running one twice is harmless. Redis losing its contents loses no work: the reconciler
re-derives what must happen from git.

With no broker configured the farm runs on sqlite files in its state folder: no server to
install, and (unlike `memory://` or `filesystem://`) it works across processes and
acknowledges messages.
"""

from __future__ import annotations

import warnings
from typing import Any

from celery import Celery
from kombu import Exchange, Queue

from formarket.farm.settings import FarmSettings
from formarket.farm.tasks import register_tasks

__all__ = ["BUILD_QUEUE", "DEPLOY_QUEUE", "QUEUES", "make_app", "restore_sweep_seconds"]

BUILD_QUEUE = "build"
DEPLOY_QUEUE = "deploy"
QUEUES = (BUILD_QUEUE, DEPLOY_QUEUE)
# Results live a day: long enough for a caller to read a build id, short enough that Redis
# is not filled with the answers to pings.
RESULT_SECONDS = 24 * 3600


def restore_sweep_seconds(visibility_timeout: int) -> int:
    """How often a worker looks for tasks whose worker died: a tenth of the visibility timeout
    (kombu's default, about 100 s, would add minutes to a short timeout), at most 100 s."""
    return max(1, min(100, visibility_timeout // 10))


def _transport_options(settings: FarmSettings) -> dict[str, Any]:
    if settings.embedded:
        # kombu polls sqlite once a second when its queues are empty. (Its `polling_interval`
        # option would shorten that, but the sqlalchemy transport hands every option on to
        # create_engine, which refuses it.)
        return {}
    return {
        "visibility_timeout": settings.visibility_timeout,
        "unacked_restore_interval": restore_sweep_seconds(settings.visibility_timeout),
        "unacked_restore_throttle": 1,  # the interval alone sets the sweep's period
    }


def _prepare_embedded(app: Celery) -> None:
    """Create the sqlite broker's tables now, with kombu's models configured while a warning
    it cannot avoid is silenced: kombu's SQLAlchemy models use `lazy="noload"`, which
    SQLAlchemy 2.1 deprecates (once configured, the mappers never warn again)."""
    # SQLAlchemy is loaded only by a farm on its embedded broker, never by one on Redis.
    from sqlalchemy.exc import SADeprecationWarning  # start-up
    from sqlalchemy.orm import configure_mappers  # start-up

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*noload.*", SADeprecationWarning)
        with app.connection_for_write() as connection:
            # Declaring a queue defines kombu's models and creates their tables.
            channel: Any = connection.default_channel
            channel.queue_declare(DEPLOY_QUEUE)
        configure_mappers()


def make_app(settings: FarmSettings) -> Celery:
    """The farm's app for `settings`, with its tasks registered by name (`formarket.*`)."""
    if settings.embedded or not settings.result_backend:
        settings.state.mkdir(parents=True, exist_ok=True)
    app = Celery("formarket", broker=settings.broker, backend=settings.backend)
    app.conf.update(
        task_queues=tuple(Queue(name, Exchange(name), routing_key=name) for name in QUEUES),
        task_default_exchange=DEPLOY_QUEUE,
        task_default_routing_key=DEPLOY_QUEUE,
        task_default_queue=DEPLOY_QUEUE,
        task_routes={
            "formarket.build": {"queue": BUILD_QUEUE},
            "formarket.deploy": {"queue": DEPLOY_QUEUE},
            "formarket.stop": {"queue": DEPLOY_QUEUE},
            "formarket.wake": {"queue": DEPLOY_QUEUE},
            "formarket.reconcile": {"queue": DEPLOY_QUEUE},
        },
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_track_started=True,
        # Results are kept only by the tasks whose callers read them (build, deploy, stop, ping).
        task_ignore_result=True,
        result_expires=RESULT_SECONDS,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        broker_transport_options=_transport_options(settings),
        broker_connection_retry_on_startup=True,
        # A worker that lost Redis reconnects by itself; a client gives up quickly instead of
        # hanging (desired state is in git, so the caller can simply try again).
        broker_connection_timeout=2,
        # A build keeps running while Redis is away: it is idempotent and publishes its image
        # whether or not its acknowledgement still reaches a broker that may have lost it.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        beat_schedule={
            "reconcile": {
                "task": "formarket.reconcile",
                "schedule": settings.reconcile_seconds,
                # A reconcile that waited a whole period is stale: the next one supersedes it.
                "options": {"queue": DEPLOY_QUEUE, "expires": settings.reconcile_seconds},
            }
        },
        beat_schedule_filename=str(settings.state / "beat-schedule"),
        timezone="UTC",
        enable_utc=True,
    )
    register_tasks(app, settings)
    if settings.embedded:
        _prepare_embedded(app)
    return app
