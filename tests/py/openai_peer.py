#!/usr/bin/env python3
"""Drives an OpenAI-compatible server with the official `openai` Python client (a peer we did not
write) and prints what it got as JSON.

    openai_peer.py BASE_URL PROMPT MODE
MODE "all": models, chat and completions, streamed and not (with usage);
MODE "stream": one streamed chat; prints the parts, the finish reason seen (or null) and the
error (or null) — used against hostile hosts.
"""
import json
import sys

import openai

base, prompt, mode = sys.argv[1], sys.argv[2], sys.argv[3]
c = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=30)
messages = [{"role": "user", "content": prompt}]

if mode == "stream":
    out = {"parts": [], "finish_reason": None, "error": None}
    try:
        for chunk in c.chat.completions.create(model="tiny", messages=messages, stream=True):
            for ch in chunk.choices:
                out["parts"].append(ch.delta.content or "")
                if ch.finish_reason:
                    out["finish_reason"] = ch.finish_reason
    except Exception as e:  # the point: which exception, if any
        out["error"] = f"{type(e).__name__}: {e}"
    print(json.dumps(out))
    sys.exit(0)

out = {"models": [m.id for m in c.models.list().data]}
out["model"] = c.models.retrieve("tiny").id
r = c.chat.completions.create(model="tiny", messages=messages)
out["chat"] = r.choices[0].message.content
out["chat_finish"] = r.choices[0].finish_reason
out["chat_usage"] = r.usage.total_tokens
parts, finish, usage = [], None, None
for chunk in c.chat.completions.create(model="tiny", messages=messages, stream=True,
                                       stream_options={"include_usage": True}):
    for ch in chunk.choices:
        parts.append(ch.delta.content or "")
        finish = ch.finish_reason or finish
    if chunk.usage:
        usage = chunk.usage.total_tokens
out["chat_stream"] = "".join(parts)
out["chat_stream_finish"] = finish
out["chat_stream_usage"] = usage
r = c.completions.create(model="tiny", prompt=prompt, max_tokens=2)
out["completion"] = r.choices[0].text
out["completion_finish"] = r.choices[0].finish_reason
out["completion_stream"] = "".join(ch.choices[0].text for ch in c.completions.create(model="tiny", prompt=prompt, stream=True) if ch.choices)
try:
    c.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "not in the dataset"}])
    out["refused"] = None
except openai.APIStatusError as e:
    out["refused"] = e.status_code
try:
    c.chat.completions.create(model="tiny", messages=messages, n=2)
    out["n2"] = None
except openai.APIStatusError as e:
    out["n2"] = e.status_code
print(json.dumps(out))
