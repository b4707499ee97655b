"""An OpenAI-compatible transcription server: /v1/audio/transcriptions, /v1/models, /health.

Standard library only. The transcript is a deterministic stand-in for the model's (it names the
audio's size, language and digest), so the image builds and boots without an inference runtime
and tests can check what comes back.
"""

import email.parser
import email.policy
import hashlib
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL_ID = os.environ.get("MODEL_ID", "lumen-labs/lumen-whisper-small")
PORT = int(os.environ.get("PORT", "8000"))
LANGUAGES = {"en", "de", "nl", "fr", "es", "it", "pt"}
MAX_BODY = 25 << 20  # the OpenAI API's limit for one audio file


def form_fields(content_type, body):
    """The parts of a multipart/form-data body, by field name: (filename, bytes)."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    fields = {}
    if not message.is_multipart():
        return fields
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name:
            fields[name] = (part.get_filename(), part.get_payload(decode=True) or b"")
    return fields


def transcribe(audio, language):
    digest = hashlib.sha256(audio).hexdigest()[:12]
    seconds = round(len(audio) / 32000, 1)  # 16 kHz, 16-bit mono
    return f"[{MODEL_ID} {language}] {seconds} seconds of audio, digest {digest}.", seconds


class Handler(BaseHTTPRequestHandler):
    server_version = "lumen-whisper/1.1"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def send_body(self, status, body, content_type):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, status, payload):
        self.send_body(status, json.dumps(payload).encode(), "application/json")

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
        if self.path != "/v1/audio/transcriptions":
            return self.error(404, "not found")
        content_type = self.headers.get("Content-Type", "")
        length = int(self.headers.get("Content-Length") or 0)
        if not content_type.startswith("multipart/form-data"):
            return self.error(400, "send the audio as multipart/form-data")
        if not 0 < length <= MAX_BODY:
            return self.error(400, f"the body must be 1 to {MAX_BODY} bytes")
        fields = form_fields(content_type, self.rfile.read(length))
        audio = fields.get("file", (None, b""))[1]
        if not audio:
            return self.error(400, "the `file` field with the audio is required")
        language = (fields.get("language", (None, b"en"))[1] or b"en").decode().strip()
        if language not in LANGUAGES:
            return self.error(400, f"language must be one of {', '.join(sorted(LANGUAGES))}")
        fmt = (fields.get("response_format", (None, b"json"))[1] or b"json").decode().strip()
        text, seconds = transcribe(audio, language)
        if fmt == "text":
            return self.send_body(200, text.encode(), "text/plain; charset=utf-8")
        if fmt == "verbose_json":
            segment = {"id": 0, "start": 0.0, "end": seconds, "text": text}
            return self.send_json(200, {
                "task": "transcribe", "language": language, "duration": seconds,
                "text": text, "segments": [segment],
            })
        if fmt != "json":
            return self.error(400, "response_format must be json, text or verbose_json")
        self.send_json(200, {"text": text})


if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", PORT), Handler).serve_forever()
