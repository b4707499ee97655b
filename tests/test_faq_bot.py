"""The FAQ Bot's handler, run with busybox as its VM runs it: a question the FAQ answers makes
no model call; any other goes to MODEL_ENDPOINT with the key, the model's name and the call it
serves as the parent."""

from __future__ import annotations

import json
import shutil
import subprocess  # noqa: TID251 - the handler is a shell script, run as its VM runs it
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

HANDLER = (
    Path(__file__).parent.parent / "registry/agents/tinyforge/faq-bot/app/handler.sh"
).resolve()
BUSYBOX = shutil.which("busybox")

pytestmark = pytest.mark.skipif(BUSYBOX is None, reason="needs busybox")


@pytest.fixture
def model() -> Iterator[tuple[str, list[tuple[dict[str, str], dict[str, object]]]]]:
    """A stand-in model that records each call's headers and body and echoes the question."""
    seen: list[tuple[dict[str, str], dict[str, object]]] = []

    class Model(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(({k.lower(): v for k, v in self.headers.items()}, body))
            answer = json.dumps({"choices": [{"message": {"content": "from the model"}}]})
            self.send_response(200)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer.encode())

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Model)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def applets(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A PATH of busybox's applets alone, as in the VM (not the host's wget, sed or awk)."""
    folder = tmp_path_factory.mktemp("busybox")
    for name in ("sh", "wget", "sed", "awk", "tr", "head", "printf", "cat"):
        (folder / name).symlink_to(str(BUSYBOX))
    return str(folder)


def ask(question: str, endpoint: str, path: str, call: str = "gw1-7") -> bytes:
    body = json.dumps(
        {"model": "dep-agent", "messages": [{"role": "user", "content": question}]}
    ).encode()
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: vm\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nX-Formarket-Call: %s\r\n\r\n%s" % (len(body), call.encode(), body)
    )
    env = {
        "PATH": path,
        "MODEL_ENDPOINT": endpoint,
        "MODEL_API_KEY": "fmk_0123456789ab_secret",
        "MODEL_NAME": "dep-model",
    }
    done = subprocess.run(
        [str(BUSYBOX), "sh", str(HANDLER)], input=request, env=env, capture_output=True, timeout=30
    )
    return done.stdout


def test_a_question_the_faq_answers_makes_no_model_call(
    model: tuple[str, list[tuple[dict[str, str], dict[str, object]]]], applets: str
) -> None:
    endpoint, seen = model
    answer = ask("How do I reset my password?", endpoint, applets)
    assert b"Reset password" in answer
    assert seen == []


def test_other_questions_go_to_the_model_through_the_gateway_with_their_parent(
    model: tuple[str, list[tuple[dict[str, str], dict[str, object]]]], applets: str
) -> None:
    endpoint, seen = model
    answer = ask("Do you sell purple giraffes?", endpoint, applets)
    assert b"from the model" in answer
    ((headers, body),) = seen
    assert headers["authorization"] == "Bearer fmk_0123456789ab_secret"
    assert headers["x-formarket-parent"] == "gw1-7"
    assert body["model"] == "dep-model"


@pytest.mark.parametrize("hostile", ["a b", "x\tEvil: 1", "$(id)", "a;b"])
def test_a_call_id_that_is_not_one_is_not_passed_on(
    model: tuple[str, list[tuple[dict[str, str], dict[str, object]]]], applets: str, hostile: str
) -> None:
    endpoint, seen = model
    ask("Do you sell purple giraffes?", endpoint, applets, call=hostile)
    ((headers, _body),) = seen
    assert "x-formarket-parent" not in headers
    assert "evil" not in headers
