"""Built images boot under qemu (TCG, direct kernel boot) and answer from the host."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from formarket.builder.templates import load_templates, scaffold
from formarket.builder.vm import boot
from formarket.process import Runner
from tests.builder.conftest import TEMPLATES, TINY, Build, write_context

pytestmark = pytest.mark.slow


def test_the_tiny_formfile_boots_and_serves_its_exposed_port(build: Build, tmp_path: Path) -> None:
    page = "<h1>hello from a formfile</h1>\n"
    result = build(write_context(tmp_path / "ctx", TINY, {"www/index.html": page}))
    with boot(Runner(), result.image_dir, result.manifest, console=tmp_path / "console") as vm:
        assert vm.wait_booted(timeout=120) < 120
        assert vm.request(8080, "/", timeout=60).decode() == page
    assert vm.process.poll() is not None


def test_the_openai_model_template_answers_a_chat_request(build: Build, tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    folder = scaffold(load_templates(TEMPLATES), "openai-model", "model", "acme/echo", registry)
    result = build(folder / "Formfile")
    request = {"model": "acme/echo", "messages": [{"role": "user", "content": "ping me"}]}
    with boot(Runner(), result.image_dir, result.manifest, console=tmp_path / "console") as vm:
        vm.wait_booted(timeout=120)
        answer = json.loads(
            vm.request(8080, "/v1/chat/completions", body=json.dumps(request).encode())
        )
        models = json.loads(vm.request(8080, "/v1/models"))
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"] == {"role": "assistant", "content": "You said: ping me"}
    assert answer["usage"] == {"prompt_tokens": 2, "completion_tokens": 4, "total_tokens": 6}
    assert models["data"][0]["id"] == "acme/echo"
