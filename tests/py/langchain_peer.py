#!/usr/bin/env python3
"""Drives an Ollama-compatible server with LangChain's Ollama integration (langchain-ollama, a
peer we did not write): OllamaLLM and ChatOllama, invoked and streamed, with their default
settings. Prints what it got as JSON.

    langchain_peer.py BASE_URL PROMPT
"""
import json
import sys

from langchain_ollama import ChatOllama, OllamaLLM

base, prompt = sys.argv[1], sys.argv[2]
llm = OllamaLLM(model="tiny", base_url=base)
chat = ChatOllama(model="tiny", base_url=base)
out = {
    "llm": llm.invoke(prompt),
    "llm_stream": "".join(llm.stream(prompt)),
    "chat": chat.invoke([("human", prompt)]).content,
    "chat_stream": "".join(c.content for c in chat.stream([("human", prompt)])),
}
print(json.dumps(out))
