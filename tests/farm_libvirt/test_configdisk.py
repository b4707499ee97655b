"""The config disk's env file: any value survives busybox sh; settings and secrets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from formarket.errors import InputError, NotFoundError
from formarket.farm.configdisk import (
    MAX_CONFIG_BYTES,
    config_disk_bytes,
    deployment_env,
    env_file,
    resolve_secrets,
)
from formarket.process import Runner
from formarket.schemas.deployment import SecretRef
from tests.farm_libvirt.factories import deployment

BUSYBOX = shutil.which("busybox")
needs_busybox = pytest.mark.skipif(BUSYBOX is None, reason="busybox-static is not installed")

# Every character an environment variable can hold: anything but NUL (and lone surrogates,
# which are not text).
values = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\0"))


def sourced(tmp_path: Path, data: bytes, name: str) -> str:
    """`name` as busybox sh sees it after reading the disk the way the base's init does."""
    disk = tmp_path / "config.img"
    disk.write_bytes(data)
    script = f"tr -d '\\000' < {disk} > {tmp_path}/env; . {tmp_path}/env; printf %s \"${name}\""
    done = Runner().run([BUSYBOX or "busybox", "sh", "-c", script])
    return done.stdout


@needs_busybox
@settings(max_examples=60, deadline=None)
@given(value=values)
def test_any_value_round_trips_through_busybox_sh(
    tmp_path_factory: pytest.TempPathFactory, value: str
) -> None:
    tmp = tmp_path_factory.mktemp("env")
    data = config_disk_bytes({"VALUE": value, "OTHER": "x'y"})
    assert sourced(tmp, data, "VALUE") == value


@needs_busybox
def test_shell_syntax_in_values_is_only_text(tmp_path: Path) -> None:
    hostile = "'; touch /tmp/pwned; echo '$(id)`id`${HOME}\\\n\"'"
    marker = tmp_path / "pwned"
    value = hostile.replace("/tmp/pwned", str(marker))
    assert sourced(tmp_path, config_disk_bytes({"V": value}), "V") == value
    assert not marker.exists()


def test_the_disk_is_whole_blocks_of_the_env_file_and_zeros() -> None:
    data = config_disk_bytes({"A": "1"})
    assert len(data) == 4096
    assert data.rstrip(b"\0").decode() == env_file({"A": "1"})
    assert len(config_disk_bytes({"A": "x" * 5000})) == 8192


@pytest.mark.parametrize(
    "env",
    [{"1ABC": "x"}, {"A-B": "x"}, {"A B": "x"}, {"": "x"}, {"A": "nul\0"}, {"A": "\ud800"}],
)
def test_names_and_values_no_environment_can_hold_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(InputError):
        config_disk_bytes(env)


def test_a_config_larger_than_the_disk_is_refused() -> None:
    with pytest.raises(InputError):
        config_disk_bytes({"A": "x" * MAX_CONFIG_BYTES})


def test_an_agent_gets_its_model_settings_as_json_and_per_scalar() -> None:
    settings = {"tone": "dry", "max-turns": 3, "strict": True, "tools": ["search"], "Tone": 1}
    agent = deployment(
        "dep-0000000000a1",
        kind="agent",
        listing="tinyforge/faq-bot",
        model_deployment="dep-0000000000b2",
        settings=settings,
    )
    env = deployment_env(
        agent, model_endpoint="http://127.0.0.1:4000", secrets={"API_KEY": "s3cr'et"}
    )
    assert env["MODEL_ENDPOINT"] == "http://127.0.0.1:4000"
    assert json.loads(env["FORMARKET_SETTINGS"]) == settings
    assert env["SETTING_MAX_TURNS"] == "3"
    assert env["SETTING_STRICT"] == "true"
    assert "SETTING_TOOLS" not in env  # not a scalar: only in the JSON
    assert "SETTING_TONE" not in env  # "tone" and "Tone" would share it: left out
    assert env["API_KEY"] == "s3cr'et"
    assert env["FORMARKET_DEPLOYMENT"] == "dep-0000000000a1"


@needs_busybox
def test_a_models_settings_reach_its_vm_as_an_agents_do(tmp_path: Path) -> None:
    model = deployment(
        "dep-0000000000b2",
        listing="acme/tiny-llm",
        settings={"context_length": 8192, "parallel_requests": 2},
    )

    data = config_disk_bytes(deployment_env(model))

    assert sourced(tmp_path, data, "SETTING_CONTEXT_LENGTH") == "8192"
    assert sourced(tmp_path, data, "SETTING_PARALLEL_REQUESTS") == "2"
    assert "MODEL_ENDPOINT" not in deployment_env(model)


def test_secrets_resolve_from_the_environment_and_files(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("from-a-file\n")
    refs = (
        SecretRef(name="A", ref="env:FARM_A"),
        SecretRef(name="B", ref=f"file:{tmp_path}/token"),
    )
    assert resolve_secrets(refs, {"FARM_A": "from-env"}) == {"A": "from-env", "B": "from-a-file"}
    with pytest.raises(NotFoundError):
        resolve_secrets((SecretRef(name="A", ref="env:MISSING"),), {})
    with pytest.raises(NotFoundError):
        resolve_secrets((SecretRef(name="A", ref=f"file:{tmp_path}/none"),), {})
    with pytest.raises(InputError):
        resolve_secrets((SecretRef(name="A", ref="vault:kv/a"),), {})
