#!/usr/bin/env python3
"""Drives a running `squeeze serve` with the official `openai` Python client (pip install openai):
chat and completions, streaming and not, plus an error case. Starts nothing itself.

usage: python3 scripts/ci/openai_client_check.py http://127.0.0.1:PORT [--api-key KEY]
Exits non-zero on the first failed check."""
import argparse
import sys
from urllib.parse import urlparse

import openai
from openai import OpenAI


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("base_url", help="server root, e.g. http://127.0.0.1:8080")
    ap.add_argument("--api-key", default="none")
    args = ap.parse_args()
    host = urlparse(args.base_url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        sys.exit(f"refusing non-loopback address {host}")
    client = OpenAI(base_url=args.base_url.rstrip("/") + "/v1", api_key=args.api_key, max_retries=0, timeout=120)

    models = client.models.list().data
    assert len(models) == 1, models
    model = models[0].id
    print(f"model: {model}")

    # Completions, not streamed.
    c = client.completions.create(model=model, prompt="The capital of France is", max_tokens=8, temperature=0)
    assert c.object == "text_completion", c
    assert c.choices[0].text, c
    assert c.choices[0].finish_reason in ("stop", "length"), c
    assert c.usage.completion_tokens >= 1 and c.usage.prompt_tokens >= 1, c.usage
    assert c.usage.total_tokens == c.usage.prompt_tokens + c.usage.completion_tokens
    print(f"completion: {c.choices[0].text!r} ({c.choices[0].finish_reason}, {c.usage.completion_tokens} tokens)")

    # Completions, streamed: same greedy text.
    pieces, finish = [], None
    for chunk in client.completions.create(model=model, prompt="The capital of France is", max_tokens=8,
                                           temperature=0, stream=True):
        if chunk.choices:
            pieces.append(chunk.choices[0].text)
            finish = chunk.choices[0].finish_reason or finish
    assert "".join(pieces) == c.choices[0].text, (pieces, c.choices[0].text)
    assert finish == c.choices[0].finish_reason, finish
    print(f"streamed completion: {len(pieces)} chunks, same text")

    # Chat, not streamed.
    msgs = [{"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is 2 + 2? Answer briefly."}]
    r = client.chat.completions.create(model=model, messages=msgs, max_tokens=16, temperature=0)
    assert r.object == "chat.completion", r
    assert r.choices[0].message.role == "assistant", r
    assert r.choices[0].message.content, r
    assert r.choices[0].finish_reason in ("stop", "length"), r
    assert r.usage.prompt_tokens > 5, r.usage
    print(f"chat: {r.choices[0].message.content!r} ({r.choices[0].finish_reason})")

    # Chat, streamed, with usage: same greedy text.
    text, usage, roles = [], None, []
    for chunk in client.chat.completions.create(model=model, messages=msgs, max_tokens=16, temperature=0,
                                                stream=True, stream_options={"include_usage": True}):
        if chunk.usage:
            usage = chunk.usage
        for ch in chunk.choices:
            if ch.delta.role:
                roles.append(ch.delta.role)
            if ch.delta.content:
                text.append(ch.delta.content)
    assert roles[:1] == ["assistant"], roles
    assert "".join(text) == r.choices[0].message.content, (text, r.choices[0].message.content)
    assert usage is not None and usage.completion_tokens == r.usage.completion_tokens, usage
    print(f"streamed chat: {len(text)} chunks, same text, usage {usage.completion_tokens} tokens")

    # Sampling parameters and a seed: reproducible.
    kw = dict(model=model, messages=msgs, max_tokens=12, temperature=0.8, top_p=0.9, seed=7,
              presence_penalty=0.1, frequency_penalty=0.1, extra_body={"top_k": 40, "min_p": 0.02})
    a = client.chat.completions.create(**kw).choices[0].message.content
    b = client.chat.completions.create(**kw).choices[0].message.content
    assert a == b, (a, b)
    print("seeded sampling: reproducible")

    # Log-probabilities.
    lp = client.chat.completions.create(model=model, messages=msgs, max_tokens=4, temperature=0, logprobs=True, top_logprobs=3)
    content = lp.choices[0].logprobs.content
    assert content and all(t.logprob <= 0 and len(t.top_logprobs) == 3 for t in content), content
    print(f"logprobs: {[(t.token, round(t.logprob, 3)) for t in content]}")

    # Errors surface as the client's typed exceptions.
    try:
        client.completions.create(model=model, prompt="x", max_tokens=4, temperature=-1)
        raise AssertionError("a negative temperature was accepted")
    except openai.BadRequestError as e:
        assert e.status_code == 400 and "temperature" in str(e), e
    try:
        client.chat.completions.create(model="no-such-model", messages=msgs, max_tokens=2)
        raise AssertionError("an unknown model was accepted")
    except openai.NotFoundError as e:
        assert e.status_code == 404, e
    print("errors: 400 and 404 raised as BadRequestError / NotFoundError")
    print("openai client check: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
