"""Triton LUT GEMM on SqueezeLLM's packed `qweight` (2, 3, 4 or 8 bits): y = x W^T, W[n, k] = lut[n][idx[n, k]].

Each program computes a [BLOCK_M, BLOCK_N] tile: for every K block it unpacks the indices from
`qweight` (3 bits: the 96-bit little-endian stream of each group of 32 inputs), looks them up in the
rows' tables (a [BLOCK_N, 2^bits] slice, small enough to stay in cache / shared memory) and
accumulates x tile @ W tile in float32. Checked on the CPU under TRITON_INTERPRET=1 against the
reference (tests/test_kernels.py); on a GPU:
    VLLM_SQUEEZE_TEST_DEVICE=cuda python -m pytest vllm-squeeze/tests/test_kernels.py -k triton
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _lut_gemm_kernel(
    x_ptr, q_ptr, lut_ptr, y_ptr, M, N, K,
    BITS: tl.constexpr, TABLE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        xt = tl.load(x_ptr + offs_m[:, None] * K + offs_k[None, :],
                     mask=(offs_m[:, None] < M) & (offs_k[None, :] < K), other=0.0)
        mask_kn = (offs_k[:, None] < K) & (offs_n[None, :] < N)
        if BITS == 3:
            g = offs_k // 32
            b = 3 * (offs_k % 32)
            wi = b // 32
            off = (b % 32)[:, None].to(tl.uint32)
            lo = tl.load(q_ptr + (3 * g + wi)[:, None] * N + offs_n[None, :], mask=mask_kn, other=0)
            hi = tl.load(q_ptr + (3 * g + wi + 1)[:, None] * N + offs_n[None, :],
                         mask=mask_kn & (wi < 2)[:, None], other=0)
            lo = lo.to(tl.uint32, bitcast=True)
            hi = hi.to(tl.uint32, bitcast=True)
            # A value crossing a word boundary takes its high bits from the next word.
            hi_part = tl.where(off > 29, hi << (32 - off), 0)
            idx = ((lo >> off) | hi_part) & 7
        else:
            PER: tl.constexpr = 32 // BITS
            word = tl.load(q_ptr + (offs_k // PER)[:, None] * N + offs_n[None, :], mask=mask_kn, other=0)
            word = word.to(tl.uint32, bitcast=True)
            shift = ((offs_k % PER) * BITS)[:, None].to(tl.uint32)
            idx = (word >> shift) & (TABLE - 1)
        w = tl.load(lut_ptr + offs_n[None, :] * TABLE + idx.to(tl.int32), mask=mask_kn, other=0.0)
        acc += tl.dot(xt, w, input_precision="ieee")
    tl.store(y_ptr + offs_m[:, None] * N + offs_n[None, :], acc,
             mask=(offs_m[:, None] < M) & (offs_n[None, :] < N))


def lut_gemm(x: torch.Tensor, qweight: torch.Tensor, lut: torch.Tensor, bits: int,
             block_m: int = 16, block_n: int = 32, block_k: int = 32) -> torch.Tensor:
    """y [M, N] = x [M, K] W^T for W packed as `qweight` [K * bits / 32, N] with tables `lut` [N, 2^bits]."""
    M, K = x.shape
    N = qweight.shape[1]
    x = x.float().contiguous()
    y = torch.empty((M, N), dtype=torch.float32, device=x.device)
    grid = (triton.cdiv(M, block_m), triton.cdiv(N, block_n))
    _lut_gemm_kernel[grid](x, qweight.contiguous(), lut.float().contiguous(), y, M, N, K,
                           BITS=bits, TABLE=1 << bits, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k)
    return y
