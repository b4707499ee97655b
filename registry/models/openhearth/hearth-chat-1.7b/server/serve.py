"""An OpenAI-compatible chat server: /v1/models, /v1/chat/completions, /v1/completions, /health.

Standard library only. The replies are a deterministic stand-in for the model's generation (the
same request always gets the same answer), so that the image builds and boots without a GPU
runtime and demos and tests can check what comes back. Streaming follows the OpenAI
server-sent-events format.
"""

import hashlib
import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL_ID = os.environ.get("MODEL_ID", "openhearth/hearth-chat-1.7b")
PORT = int(os.environ.get("PORT", "8000"))
MAX_BODY = 4 << 20


def words(text):
    return text.split()


def last_user_text(messages):
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):  # content parts: keep the text ones
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return str(content or "")
    return ""


def generate(prompt, max_tokens):
    digest = hashlib.sha256(prompt.encode()).hexdigest()[:8]
    topic = " ".join(words(prompt)[:12]) or "nothing in particular"
    reply = f"[{MODEL_ID} {digest}] You asked about: {topic}."
    return " ".join(words(reply)[: max(1, max_tokens)])


class Handler(BaseHTTPRequestHandler):
    server_version = "formarket-chat/1.0"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def send_json(self, status, payload):
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def error(self, status, message):
        self.send_json(status, {"error": {"message": message, "type": "invalid_request_error"}})

    def do_GET(self):
        if self.path == "/health":
            self.send_json(200, {"status": "ok"})
        elif self.path == "/v1/models":
            model = {"id": MODEL_ID, "object": "model", "owned_by": MODEL_ID.split("/")[0]}
            self.send_json(200, {"object": "list", "data": [model]})
        else:
            self.error(404, "not found")

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= MAX_BODY:
            return self.error(400, "a JSON body is required")
        try:
            request = json.loads(self.rfile.read(length))
        except ValueError:
            return self.error(400, "the body is not JSON")
        if not isinstance(request, dict):
            return self.error(400, "the body must be a JSON object")
        max_tokens = int(request.get("max_tokens") or 256)
        if self.path == "/v1/chat/completions":
            messages = request.get("messages")
            if not isinstance(messages, list) or not messages:
                return self.error(400, "messages must be a non-empty list")
            prompt = last_user_text(messages)
            prompt_tokens = sum(len(words(str(m.get("content", "")))) for m in messages)
            kind = "chat.completion"
        elif self.path == "/v1/completions":
            prompt = str(request.get("prompt") or "")
            prompt_tokens = len(words(prompt))
            kind = "text_completion"
        else:
            return self.error(404, "not found")
        text = generate(prompt, max_tokens)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(words(text)),
            "total_tokens": prompt_tokens + len(words(text)),
        }
        digest = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()
        ident = "cmpl-" + digest[:16]
        if request.get("stream"):
            return self.stream(ident, kind, text, usage)
        if kind == "chat.completion":
            choice = {"index": 0, "message": {"role": "assistant", "content": text}}
        else:
            choice = {"index": 0, "text": text}
        choice["finish_reason"] = "stop"
        self.send_json(200, {
            "id": ident, "object": kind, "created": int(time.time()), "model": MODEL_ID,
            "choices": [choice], "usage": usage,
        })

    def stream(self, ident, kind, text, usage):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        chunk_kind = kind + ".chunk" if kind == "chat.completion" else kind
        pieces = [w + " " for w in words(text)]
        pieces[-1] = pieces[-1].rstrip()
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            if kind == "chat.completion":
                choice = {"index": 0, "delta": {"content": piece}}
            else:
                choice = {"index": 0, "text": piece}
            choice["finish_reason"] = "stop" if last else None
            event = {"id": ident, "object": chunk_kind, "created": int(time.time()),
                     "model": MODEL_ID, "choices": [choice]}
            if last:
                event["usage"] = usage
            self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", PORT), Handler).serve_forever()
