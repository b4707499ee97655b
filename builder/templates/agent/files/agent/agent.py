"""A chat agent: OpenAI-style requests in, its model's answers out (standard library only).

The model is reached through the marketplace's gateway: the deployment sets MODEL_ENDPOINT (the
gateway, the only address the VM can reach), MODEL_API_KEY (a key for the attached model) and
MODEL_NAME (the model's deployment). The agent puts its own system prompt first and passes the
conversation on, naming the call it serves (X-Formarket-Call) as its model call's parent.
"""

import json
import os
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

AGENT_ID = os.environ.get("AGENT_ID", "{{id}}")
MODEL_ENDPOINT = os.environ.get("MODEL_ENDPOINT", "http://127.0.0.1:8080").rstrip("/")
MODEL_API_KEY = os.environ.get("MODEL_API_KEY", "")
MODEL_NAME = os.environ.get("MODEL_NAME", "model")
SYSTEM_PROMPT = os.environ.get("SYSTEM_PROMPT", "You are a helpful, concise assistant.")
PORT = int(os.environ.get("PORT", "8000"))


def ask_model(messages, parent):
    system = {"role": "system", "content": SYSTEM_PROMPT}
    body = json.dumps({"model": MODEL_NAME, "messages": [system, *messages]})
    headers = {"Content-Type": "application/json"}
    if MODEL_API_KEY:
        headers["Authorization"] = f"Bearer {MODEL_API_KEY}"
    if parent:
        headers["X-Formarket-Parent"] = parent
    request = urllib.request.Request(
        f"{MODEL_ENDPOINT}/v1/chat/completions", data=body.encode(), headers=headers
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


class Handler(BaseHTTPRequestHandler):
    def reply(self, status, data):
        raw = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self):
        if self.path == "/health":
            self.reply(200, {"status": "ok", "agent": AGENT_ID, "model": MODEL_ENDPOINT})
        else:
            self.reply(404, {"error": {"message": "not found"}})

    def do_POST(self):
        if self.path != "/v1/chat/completions":
            self.reply(404, {"error": {"message": "not found"}})
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
            messages = json.loads(self.rfile.read(length))["messages"]
        except (ValueError, KeyError, TypeError):
            self.reply(400, {"error": {"message": "expected a JSON body with messages"}})
            return
        try:
            answer = ask_model(messages, self.headers.get("X-Formarket-Call", ""))
        except (urllib.error.URLError, OSError, ValueError) as exc:
            self.reply(502, {"error": {"message": f"the model did not answer: {exc}"}})
            return
        self.reply(200, answer)


if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", PORT), Handler).serve_forever()
