"""An OpenAI-compatible image server: /v1/images/generations, /v1/models, /health.

Standard library only. The image is a deterministic stand-in for the model's (a gradient whose
colours come from the prompt's digest, as a PNG), so the image builds and boots without an
inference runtime and the same prompt always gives the same picture.
"""

import base64
import hashlib
import json
import os
import struct
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL_ID = os.environ.get("MODEL_ID", "lumen-labs/sketch-turbo")
PORT = int(os.environ.get("PORT", "8000"))
SIZES = {"256x256": 256, "512x512": 512}
MAX_IMAGES = 4
MAX_BODY = 1 << 20


def png(width, height, rows):
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"".join(b"\x00" + row for row in rows)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )


def draw(prompt, seed, side):
    digest = hashlib.sha256(f"{seed}:{prompt}".encode()).digest()
    top, bottom = digest[0:3], digest[3:6]
    rows = []
    for y in range(side):
        t = y / (side - 1)
        colour = bytes(round(a + (b - a) * t) for a, b in zip(top, bottom, strict=True))
        rows.append(colour * side)
    return png(side, side, rows)


class Handler(BaseHTTPRequestHandler):
    server_version = "sketch-turbo/0.9"
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
        if self.path != "/v1/images/generations":
            return self.error(404, "not found")
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= MAX_BODY:
            return self.error(400, "a JSON body is required")
        try:
            request = json.loads(self.rfile.read(length))
        except ValueError:
            return self.error(400, "the body is not JSON")
        if not isinstance(request, dict) or not isinstance(request.get("prompt"), str):
            return self.error(400, "prompt must be a string")
        size = request.get("size", "512x512")
        if size not in SIZES:
            return self.error(400, f"size must be one of {', '.join(SIZES)}")
        count = request.get("n", 1)
        if not isinstance(count, int) or not 1 <= count <= MAX_IMAGES:
            return self.error(400, f"n must be 1 to {MAX_IMAGES}")
        if request.get("response_format", "b64_json") != "b64_json":
            return self.error(400, "only response_format b64_json is supported")
        images = [
            {"b64_json": base64.b64encode(draw(request["prompt"], i, SIZES[size])).decode()}
            for i in range(count)
        ]
        self.send_json(200, {"created": int(time.time()), "data": images})


if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", PORT), Handler).serve_forever()
