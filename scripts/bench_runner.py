"""Generation speed of secllama-runner against llama.cpp's own server (through the `xllamacpp`
wheel, a peer we did not write): same GGUF, same chat prompts, same thread count, greedy, the
two interleaved request by request so both see the same machine load. Tokens per second are each
engine's own count of generated tokens over its own decode time (Ollama's eval_count /
eval_duration; llama-server's timings.predicted_n / predicted_ms).

    python bench_runner.py RUNNER_BIN GGUF [--threads N] [--rounds R] [--tokens T]

Prints the medians and the ratio (goal >= 0.95x); exits 1 if a request fails.
"""

import argparse
import json
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

import xllamacpp as xlc

PROMPTS = [
    "Why is the sky blue?",
    "Explain in one sentence what a compiler does.",
    "Give two tips for writing a clear email.",
]


def post(url, body):
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as r:
        return json.loads(r.read())


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("runner")
    ap.add_argument("gguf")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=64)
    a = ap.parse_args()

    ours = subprocess.Popen([a.runner, "--listen", "127.0.0.1:0", "--threads", str(a.threads),
                             "--model", f"smollm2:135m={a.gguf}"], stdout=subprocess.PIPE, text=True)
    try:
        line = ours.stdout.readline().strip()
        prefix = "secllama-runner listening on "
        if not line.startswith(prefix):
            sys.exit(f"bench: secllama-runner said {line!r}")
        ours_url = f"http://{line[len(prefix):]}"

        p = xlc.CommonParams()
        p.model.path = a.gguf
        p.n_ctx = 2048
        p.cpuparams.n_threads = a.threads
        p.cpuparams_batch.n_threads = a.threads
        p.hostnames = ["127.0.0.1"]
        p.port = free_port()
        peer = xlc.Server(p)  # noqa: F841  (serves until the process ends)
        peer_url = f"http://127.0.0.1:{p.port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{peer_url}/health", timeout=5)
                break
            except OSError:
                time.sleep(0.1)

        rates = {"ours": [], "peer": []}
        tokens = {"ours": [], "peer": []}
        for r in range(a.rounds + 1):  # round 0 warms both up and is not counted
            for prompt in PROMPTS:
                msgs = [{"role": "user", "content": prompt}]
                o = post(f"{ours_url}/api/chat", {"model": "smollm2:135m", "messages": msgs, "stream": False,
                                                  "options": {"num_predict": a.tokens, "temperature": 0, "seed": 42}})
                q = post(f"{peer_url}/v1/chat/completions", {"messages": msgs, "max_tokens": a.tokens,
                                                              "temperature": 0, "seed": 42})
                if r == 0:
                    continue
                rates["ours"].append(o["eval_count"] / (o["eval_duration"] / 1e9))
                tokens["ours"].append(o["eval_count"])
                t = q["timings"]
                rates["peer"].append(t["predicted_n"] / (t["predicted_ms"] / 1e3))
                tokens["peer"].append(t["predicted_n"])
        mo, mp = statistics.median(rates["ours"]), statistics.median(rates["peer"])
        print(f"{'generation, ' + str(a.threads) + ' thread(s), greedy, SmolLM2-135M Q4_1':66} {'ours':>12} {'llama.cpp':>12} {'ratio':>8}")
        print(f"{'tokens/s, median of ' + str(len(rates['ours'])) + ' chats (' + str(sum(tokens['ours'])) + ' vs ' + str(sum(tokens['peer'])) + ' tokens)':66}"
              f" {mo:>8.1f} t/s {mp:>8.1f} t/s {mo / mp:>7.2f}x")
        if mo / mp < 0.95:
            print(f"bench: goal not met: secllama-runner at {mo / mp:.2f}x llama.cpp (goal >= 0.95x)")
    finally:
        ours.kill()
        ours.wait()


if __name__ == "__main__":
    main()
