#!/usr/bin/env python3
"""Drives an Ollama-compatible server with the official `ollama` Python client (a peer we did not
write) and prints what it got as JSON: generate and chat, streaming and not, and the model list."""
import json
import sys

import ollama

host = sys.argv[1]
prompt = sys.argv[2]
c = ollama.Client(host=host)
opts = {"num_predict": 64}
out = {
    "generate": c.generate(model="tiny:latest", prompt=prompt, stream=False, options=opts)["response"],
    "generate_stream": [p["response"] for p in c.generate(model="tiny:latest", prompt=prompt, stream=True, options=opts)],
    "chat": c.chat(model="tiny:latest", messages=[{"role": "user", "content": prompt}], stream=False, options=opts)["message"]["content"],
    "chat_stream": [p["message"]["content"] for p in c.chat(model="tiny:latest", messages=[{"role": "user", "content": prompt}], stream=True, options=opts)],
    "models": [m["model"] for m in c.list()["models"]],
}
try:
    c.generate(model="other", prompt=prompt, stream=False)
    out["unknown_model"] = "accepted"
except ollama.ResponseError as e:
    out["unknown_model"] = e.status_code
print(json.dumps(out))
