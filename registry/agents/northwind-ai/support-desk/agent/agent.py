"""support-desk: a customer-support agent that follows Northwind's support playbook.

Standard library only; an OpenAI-compatible front (/health, /v1/models, /v1/chat/completions)
on PORT. Settings given at deploy time arrive as a JSON object in AGENT_SETTINGS. The replies
are deterministic, so demos and tests can check what comes back.
"""

import hashlib
import json
import os
import re
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

AGENT_ID = os.environ.get("AGENT_ID", "northwind-ai/support-desk")
PORT = int(os.environ.get("PORT", "8000"))
SETTINGS = json.loads(os.environ.get("AGENT_SETTINGS") or "{}")
HERE = os.path.dirname(os.path.abspath(__file__))
MAX_BODY = 4 << 20
WORD = re.compile(r"[a-z0-9]+")


def words(text):
    return set(WORD.findall(text.lower()))


def overlap(a, b):
    """Cosine similarity of two word sets: 1.0 when equal, 0.0 when disjoint."""
    return len(a & b) / ((len(a) * len(b)) ** 0.5) if a and b else 0.0


def last_user_text(messages):
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return str(content or "")
    return ""

# The knowledge base ships in the image; a deployment may point KB_PATH at its own.
KB_PATH = os.environ.get("KB_PATH", os.path.join(HERE, "kb.json"))
with open(KB_PATH, encoding="utf-8") as kb_file:
    KB = json.load(kb_file)
ESCALATE = {"complaint", "lawyer", "legal", "ombudsman", "furious", "unacceptable", "manager"}
GREETING = {
    "en": "Thanks for reaching out.",
    "nl": "Bedankt voor uw bericht.",
    "de": "Danke für Ihre Nachricht.",
    "fr": "Merci pour votre message.",
}


def respond(question):
    """The playbook: escalate angry or legal messages, answer from the knowledge base, else
    open a ticket. Each step is one of the agent's tools."""
    asked = words(question)
    language = SETTINGS.get("language", "en")
    opener = GREETING.get(language, GREETING["en"])
    ticket = "NW-" + hashlib.sha256(question.encode()).hexdigest()[:6].upper()
    if asked & ESCALATE:
        who = SETTINGS.get("escalation_email", "a team lead")
        return (f"{opener} I am sorry this has gone wrong. I have escalated your message to "
                f"{who} as ticket {ticket}; you will hear from a person today.")
    best = max(KB, key=lambda entry: overlap(asked, words(" ".join(entry["keywords"]))))
    if overlap(asked, words(" ".join(best["keywords"]))) >= 0.25:
        return f"{opener} {best['answer']}"
    return (f"{opener} I could not find this in our help articles, so I opened ticket {ticket}. "
            "A colleague will reply within one working day.")


class Handler(BaseHTTPRequestHandler):
    server_version = "formarket-agent/1.0"
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
            model = {"id": AGENT_ID, "object": "model", "owned_by": AGENT_ID.split("/")[0]}
            self.send_json(200, {"object": "list", "data": [model]})
        else:
            self.error(404, "not found")

    def do_POST(self):
        if self.path != "/v1/chat/completions":
            return self.error(404, "not found")
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= MAX_BODY:
            return self.error(400, "a JSON body is required")
        try:
            request = json.loads(self.rfile.read(length))
        except ValueError:
            return self.error(400, "the body is not JSON")
        messages = request.get("messages") if isinstance(request, dict) else None
        if not isinstance(messages, list) or not messages:
            return self.error(400, "messages must be a non-empty list")
        text = respond(last_user_text(messages))
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages
                            if isinstance(m, dict))
        completion_tokens = len(text.split())
        ident = "chatcmpl-" + hashlib.sha256(json.dumps(messages).encode()).hexdigest()[:16]
        self.send_json(200, {
            "id": ident, "object": "chat.completion", "created": int(time.time()),
            "model": AGENT_ID,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        })


if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", PORT), Handler).serve_forever()
