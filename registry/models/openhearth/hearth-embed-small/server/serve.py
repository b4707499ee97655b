"""An OpenAI-compatible embeddings server: /v1/models, /v1/embeddings, /health.

Standard library only. Vectors are a deterministic stand-in for the model's (hashed word and
character features, L2-normalised, DIMENSIONS long), so the image builds and boots without an
inference runtime and tests can rely on the same text giving the same vector.
"""

import base64
import hashlib
import json
import math
import os
import re
import struct
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL_ID = os.environ.get("MODEL_ID", "openhearth/hearth-embed-small")
PORT = int(os.environ.get("PORT", "8000"))
DIMENSIONS = int(os.environ.get("DIMENSIONS", "384"))
MAX_INPUTS = 2048
MAX_BODY = 8 << 20
WORD = re.compile(r"\w+")


def features(text):
    words = WORD.findall(text.lower())
    yield from words
    yield from (a + " " + b for a, b in zip(words, words[1:], strict=False))
    for word in words:
        padded = f"<{word}>"
        yield from (padded[i : i + 3] for i in range(len(padded) - 2))


def embed(text):
    vector = [0.0] * DIMENSIONS
    for feature in features(text):
        digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
        index = int.from_bytes(digest[:4], "little") % DIMENSIONS
        vector[index] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [round(v / norm, 6) for v in vector]


class Handler(BaseHTTPRequestHandler):
    server_version = "hearth-embed/1.0"
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
        if self.path != "/v1/embeddings":
            return self.error(404, "not found")
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= MAX_BODY:
            return self.error(400, "a JSON body is required")
        try:
            request = json.loads(self.rfile.read(length))
        except ValueError:
            return self.error(400, "the body is not JSON")
        inputs = request.get("input") if isinstance(request, dict) else None
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
            return self.error(400, "input must be a string or a list of strings")
        if not 0 < len(inputs) <= MAX_INPUTS:
            return self.error(400, f"between 1 and {MAX_INPUTS} inputs per request")
        as_base64 = request.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(inputs):
            vector = embed(text)
            if as_base64:
                vector = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": vector})
        tokens = sum(len(WORD.findall(text)) for text in inputs)
        self.send_json(200, {
            "object": "list", "model": MODEL_ID, "data": data,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        })


if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", PORT), Handler).serve_forever()
