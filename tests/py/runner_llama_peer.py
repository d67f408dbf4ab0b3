#!/usr/bin/env python3
"""Drives secllama-runner (llama.cpp, a real GGUF model) with the official `ollama` Python client, a
peer we did not write, and prints what it got as JSON: list, show, ps, generate and chat (streamed
and not, greedy, twice), and the error for an unknown model."""
import json
import sys

import ollama

host, model = sys.argv[1], sys.argv[2]
c = ollama.Client(host=host)
opts = {"num_predict": 64, "temperature": 0, "seed": 42}
prompt = "What is the capital of France? Answer in one sentence."
messages = [{"role": "user", "content": prompt}]

FINAL = ["done_reason", "total_duration", "load_duration", "prompt_eval_count",
         "prompt_eval_duration", "eval_count", "eval_duration"]


def final(r):
    return {k: getattr(r, k) for k in FINAL}


def generate(stream):
    if not stream:
        r = c.generate(model=model, prompt=prompt, stream=False, options=opts)
        return r.response, final(r)
    parts = list(c.generate(model=model, prompt=prompt, stream=True, options=opts))
    assert all(not p.done for p in parts[:-1]) and parts[-1].done, "done only on the last chunk"
    return "".join(p.response for p in parts), final(parts[-1])


def chat(stream):
    if not stream:
        r = c.chat(model=model, messages=messages, stream=False, options=opts)
        assert r.message.role == "assistant"
        return r.message.content, final(r)
    parts = list(c.chat(model=model, messages=messages, stream=True, options=opts))
    assert all(p.message.role == "assistant" for p in parts)
    assert all(not p.done for p in parts[:-1]) and parts[-1].done, "done only on the last chunk"
    return "".join(p.message.content for p in parts), final(parts[-1])


lst = c.list()
show = c.show(model)
ps = c.ps()
out = {
    "list": [{"model": m.model, "digest": m.digest, "size": int(m.size),
              "details": m.details.model_dump()} for m in lst.models],
    "show": {
        "details": show.details.model_dump(),
        "template": show.template,
        "architecture": show.modelinfo.get("general.architecture"),
        "parameter_count": show.modelinfo.get("general.parameter_count"),
        "tokens": show.modelinfo.get("tokenizer.ggml.tokens"),
        "modified_at": show.modified_at.isoformat() if show.modified_at else None,
    },
    "ps": [m.model for m in ps.models],
    "generate": [generate(False), generate(True), generate(False)],
    "chat": [chat(False), chat(True), chat(False)],
    "version": c._client.get("/api/version").json(),
}
try:
    c.generate(model="no-such-model", prompt=prompt, stream=False)
    out["unknown_model"] = "accepted"
except ollama.ResponseError as e:
    out["unknown_model"] = [e.status_code, e.error]
try:
    c.generate(model=model, prompt=prompt, stream=False, options={"temperature": "hot"})
    out["bad_option"] = "accepted"
except ollama.ResponseError as e:
    out["bad_option"] = [e.status_code, e.error]
print(json.dumps(out))
