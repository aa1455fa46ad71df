"""The C-kernel path and the Triton kernel against the PyTorch reference.

Tolerance as in the Swift kernel tests (Tests/SqueezeKernelsTests/LUTTests.swift, float path):
|y - reference| <= 1e-5 * sum_i |w_i x_i| per output, with the reference in float64.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import random_tensor
from vllm_squeeze.config import Segment
from vllm_squeeze.kernels import CKernel, ReferenceKernel, load_extension
from vllm_squeeze.layout import dequantize

HERE = Path(__file__).resolve().parent


def within(y, x, w):
    """Asserts |y - x w^T| <= 1e-5 * |x| |w|^T elementwise (float64 reference)."""
    ref = x.double() @ w.double().T
    mag = x.double().abs() @ w.double().abs().T
    err = (y.double() - ref).abs()
    bad = err > 1e-5 * mag + 1e-30
    assert not bool(bad.any()), f"max excess {float((err - 1e-5 * mag).max())} at {bad.nonzero()[:3].tolist()}"


def segment(rows, cols, bits, density, seed):
    q, lut, sp, _ = random_tensor(rows, cols, bits, density, seed)
    return Segment(bits, q, lut, sp, rows)


needs_c = pytest.mark.skipif(load_extension() is None, reason="C extension not built")


@needs_c
@pytest.mark.parametrize("bits", [3, 4])
@pytest.mark.parametrize("density", [0.0, 0.005, 0.05])
@pytest.mark.parametrize("cols", [256, 160, 96 * 4])
@pytest.mark.parametrize("tokens", [1, 3, 16, 40])
def test_c_equals_reference(bits, density, cols, tokens):
    if cols % (32 if bits == 3 else 8):
        pytest.skip("not packable")
    segs = [segment(200, cols, bits, density, seed=bits * 7 + tokens)]
    x = torch.randn(tokens, cols, generator=torch.Generator().manual_seed(tokens))
    w = dequantize(segs[0].qweight, segs[0].lut, bits, segs[0].sparse)
    y = CKernel(segs, cols)(x)
    assert y.shape == (tokens, 200)
    within(y, x, w)
    within(ReferenceKernel(segs, cols)(x), x, w)


@needs_c
def test_c_merged_segments_of_mixed_width():
    # q at 4 bits with sparse, k at 3 bits dense, v at 4 bits dense: two runs of widths [4], [3], [4].
    segs = [segment(128, 256, 4, 0.01, 1), segment(64, 256, 3, 0.0, 2), segment(64, 256, 4, 0.0, 3)]
    x = torch.randn(5, 256, generator=torch.Generator().manual_seed(9))
    w = torch.cat([dequantize(s.qweight, s.lut, s.bits, s.sparse) for s in segs])
    within(CKernel(segs, 256)(x), x, w)


@needs_c
def test_c_bfloat16_input_returns_bfloat16():
    segs = [segment(64, 128, 4, 0.0, 4)]
    x = torch.randn(2, 128).bfloat16()
    y = CKernel(segs, 128)(x)
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), ReferenceKernel(segs, 128)(x.float()), rtol=1e-2, atol=1e-2)


def test_triton_interpreter_equals_reference():
    """Runs test_triton_child in a subprocess with TRITON_INTERPRET=1 (set before triton is imported)."""
    pytest.importorskip("triton")
    env = dict(os.environ, TRITON_INTERPRET="1", VLLM_SQUEEZE_TRITON_CHILD="1")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", f"{__file__}::test_triton_child"],
                       env=env, capture_output=True, text=True, timeout=900, cwd=HERE)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "1 passed" in r.stdout


@pytest.mark.skipif(os.environ.get("VLLM_SQUEEZE_TRITON_CHILD") != "1", reason="run by test_triton_interpreter_equals_reference")
def test_triton_child():
    from vllm_squeeze.kernels import TritonKernel

    device = os.environ.get("VLLM_SQUEEZE_TEST_DEVICE", "cpu")
    for bits, density, cols, tokens in [(4, 0.0, 96, 3), (3, 0.02, 96, 5), (4, 0.01, 64, 1), (2, 0.0, 64, 2)]:
        segs = [segment(48, cols, bits, density, seed=bits + tokens)]
        x = torch.randn(tokens, cols, generator=torch.Generator().manual_seed(bits))
        w = dequantize(segs[0].qweight, segs[0].lut, bits, segs[0].sparse)
        if device != "cpu":
            segs = [Segment(s.bits, s.qweight.to(device), s.lut.to(device), s.sparse, s.rows) for s in segs]
        y = TritonKernel(segs, cols)(x.to(device)).cpu()
        within(y, x, w)
