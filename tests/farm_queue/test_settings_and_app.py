"""The farm's settings and app configuration: pure, no broker needed."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from formarket.errors import UsageError
from formarket.farm.celery_app import make_app, restore_sweep_seconds
from formarket.farm.errors import BuildBusy, TransientError, backoff, is_transient
from formarket.farm.settings import FarmSettings


def test_defaults_follow_the_repository(tmp_path: Path) -> None:
    settings = FarmSettings.from_env(tmp_path, {})
    assert settings.repo == tmp_path
    assert settings.state == tmp_path / "build" / "farm"
    assert settings.store == settings.state / "store"
    assert settings.cache == settings.state / "cache"
    assert settings.branch == "main"
    assert settings.hosts is None
    assert settings.build_time_limit == 3600
    assert settings.visibility_timeout > settings.build_time_limit
    assert settings.reconcile_seconds == 30
    assert settings.embedded
    assert settings.broker == f"sqla+sqlite:///{settings.state}/broker.sqlite"
    assert settings.backend == f"db+sqlite:///{settings.state}/results.sqlite"


def test_redis_broker_keeps_results_in_redis_unless_told(tmp_path: Path) -> None:
    env = {"FORMARKET_BROKER_URL": "redis://127.0.0.1:1/0", "FORMARKET_STATE": "s"}
    settings = FarmSettings.from_env(tmp_path, env)
    assert not settings.embedded
    assert settings.backend == "redis://127.0.0.1:1/0"
    assert settings.state == tmp_path / "s"
    other = FarmSettings.from_env(tmp_path, {**env, "FORMARKET_RESULT_BACKEND": "redis://x/1"})
    assert other.backend == "redis://x/1"


def test_settings_survive_the_trip_to_a_worker(tmp_path: Path) -> None:
    env = {
        "FORMARKET_BROKER_URL": "redis://127.0.0.1:1/0",
        "FORMARKET_HOSTS": "hosts.yaml",
        "FORMARKET_BUILD_TIME_LIMIT": "120",
        "FORMARKET_RECONCILE_SECONDS": "2.5",
        "FORMARKET_BRANCH": "farm",
        "FORMARKET_GITHUB_REPO": "acme/marketplace",
        "FORMARKET_GATEWAY_URL": "https://gateway.example.net",
    }
    settings = FarmSettings.from_env(tmp_path, env)
    assert FarmSettings.from_env(Path("/"), settings.to_env()) == settings


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("FORMARKET_BUILD_TIME_LIMIT", "soon"),
        ("FORMARKET_BUILD_TIME_LIMIT", "0"),
        ("FORMARKET_BUILD_TIME_LIMIT", "1.5"),
        ("FORMARKET_RECONCILE_SECONDS", "-3"),
        ("FORMARKET_RECONCILE_SECONDS", "nan"),
        ("FORMARKET_VISIBILITY_TIMEOUT", "3600"),  # not longer than the default build limit
        ("FORMARKET_BROKER_URL", "localhost:6379"),
        ("FORMARKET_BRANCH", "--upload-pack=x"),
        ("FORMARKET_GITHUB_REPO", "acme"),
        ("FORMARKET_GITHUB_REPO", "acme/market; rm -rf /"),
        ("FORMARKET_GITHUB_REPO", "../../etc/passwd"),
        ("FORMARKET_GATEWAY_URL", "gateway.example.net"),
    ],
)
def test_invalid_values_name_their_variable(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(UsageError) as caught:
        FarmSettings.from_env(tmp_path, {name: value})
    assert name in caught.value.message
    assert caught.value.hint


def test_backoff_doubles_up_to_its_cap() -> None:
    delays = [backoff(n) for n in range(12)]
    assert delays[:4] == [2, 4, 8, 16]
    assert all(b >= a for a, b in itertools.pairwise(delays))
    assert max(delays) == 300
    assert backoff(10_000) == 300


def test_which_errors_are_retried() -> None:
    assert is_transient(BuildBusy("busy"))
    assert is_transient(TransientError("hiccup"))
    assert is_transient(ConnectionRefusedError())
    assert is_transient(TimeoutError())
    assert not is_transient(UsageError("wrong"))
    assert not is_transient(ValueError("bug"))


def test_restore_sweep_scales_with_the_visibility_timeout() -> None:
    assert restore_sweep_seconds(4500) == 100  # kombu's own default period
    assert restore_sweep_seconds(20) == 2
    assert restore_sweep_seconds(3) == 1


def test_app_survives_a_killed_worker_by_configuration(tmp_path: Path) -> None:
    env = {"FORMARKET_BROKER_URL": "redis://127.0.0.1:1/0", "FORMARKET_BUILD_TIME_LIMIT": "600"}
    settings = FarmSettings.from_env(tmp_path, env)
    app = make_app(settings)
    conf = app.conf
    assert conf.task_acks_late
    assert conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_track_started
    assert conf.broker_transport_options["visibility_timeout"] > 600
    assert {q.name for q in conf.task_queues} == {"build", "deploy"}
    assert conf.task_routes["formarket.build"] == {"queue": "build"}
    assert conf.task_routes["formarket.reconcile"] == {"queue": "deploy"}
    assert conf.beat_schedule["reconcile"]["schedule"] == settings.reconcile_seconds
    build = app.tasks["formarket.build"]
    assert build.soft_time_limit == 600
    assert build.time_limit > 600
    assert not build.ignore_result
    assert app.tasks["formarket.reconcile"].ignore_result
    for name in ("build", "deploy", "stop", "reconcile", "ping"):
        assert f"formarket.{name}" in app.tasks
    app.close()


def test_each_app_runs_its_tasks_with_its_own_settings(tmp_path: Path) -> None:
    """Two apps in one process (a test, the demo): neither sees the other's tasks."""
    first = make_app(FarmSettings.from_env(tmp_path / "a", {}))
    second = make_app(FarmSettings.from_env(tmp_path / "b", {}))
    assert first.tasks["formarket.ping"] is not second.tasks["formarket.ping"]
    assert first.tasks["formarket.ping"].app is first
    first.close()
    second.close()
