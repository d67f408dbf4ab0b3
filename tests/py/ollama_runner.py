"""An interpreter-based Ollama-API runner, standard library only: what an operator's Python runner
looks like to the enclave (a measured interpreter, its measured standard library tree, this
script in a measured tree, extension modules loading their own shared libraries).

    python3 ollama_runner.py --listen 127.0.0.1:PORT --model NAME

Answers deterministically: "py:" then the prompt's words in reverse order, one NDJSON chunk per
word when streamed. Serves GET /, /api/version, /api/tags and POST /api/generate, /api/chat (the
`stream` flag honoured), HTTP/1.1 keep-alive. Loads the `_hashlib` extension module at start (it
links libcrypto), so a runner whose extension libraries were not measured fails to start.
"""

import _hashlib  # noqa: F401  (an extension module with its own shared library)
import argparse
import hashlib
import http.server
import json
import sys
import time


def answer_words(prompt):
    return ["py:"] + [w + " " for w in reversed(prompt.split())]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    model = "py:latest"

    def log_message(self, *args):
        pass

    def send_json(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/":
            body = b"Ollama is running"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path == "/api/version":
            self.send_json(200, {"version": "0.0.0-py"})
        elif self.path == "/api/tags":
            digest = hashlib.sha256(self.model.encode()).hexdigest()
            self.send_json(200, {"models": [{"name": self.model, "model": self.model,
                                             "size": 0, "digest": digest, "details": {}}]})
        else:
            self.send_json(404, {"error": "404 page not found"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        try:
            req = json.loads(self.rfile.read(length) or b"{}")
        except ValueError as e:
            return self.send_json(400, {"error": f"invalid JSON: {e}"})
        if self.path == "/api/generate":
            prompt, chat = req.get("prompt", ""), False
        elif self.path == "/api/chat":
            msgs = req.get("messages") or [{}]
            prompt, chat = msgs[-1].get("content", ""), True
        else:
            return self.send_json(404, {"error": "404 page not found"})
        if req.get("model") != self.model:
            return self.send_json(404, {"error": f"model \"{req.get('model')}\" not found, try pulling it first"})
        words = answer_words(prompt)
        limit = (req.get("options") or {}).get("num_predict")
        if isinstance(limit, int) and limit >= 0:
            words = words[:limit]

        def chunk(text, done):
            c = {"model": self.model, "created_at": "2026-01-01T00:00:00Z", "done": done}
            if chat:
                c["message"] = {"role": "assistant", "content": text}
            else:
                c["response"] = text
            if done:
                c.update(done_reason="stop", total_duration=1, eval_count=len(words))
            return c

        if req.get("stream", True) is False:
            return self.send_json(200, chunk("".join(words), True))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for c in [chunk(w, False) for w in words] + [chunk("", True)]:
            line = json.dumps(c).encode() + b"\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
            self.wfile.flush()
            time.sleep(0.001)
        self.wfile.write(b"0\r\n\r\n")


class Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a readiness probe hung up
            super().handle_error(request, client_address)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--listen", required=True)
    p.add_argument("--model", default="py:latest")
    a = p.parse_args()
    host, _, port = a.listen.rpartition(":")
    if host not in ("127.0.0.1", "localhost", "[::1]"):
        sys.exit(f"--listen: expected a loopback address, found {a.listen}")
    Handler.model = a.model
    srv = Server((host.strip("[]"), int(port)), Handler)
    print(f"listening on {a.listen}", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
