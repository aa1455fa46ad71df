"""The products behind `apply`: the PyTorch reference, Squeeze's C kernels (CPU) and Triton (GPU).

Choose with VLLM_SQUEEZE_KERNEL=auto|reference|c|triton (auto: C on the CPU when the extension is
built, Triton on a GPU when triton is installed, else the reference).
"""

from __future__ import annotations

import os
from typing import Callable

import torch

from .layout import Sparse, dequantize, unpack

_EXT = None


def load_extension():
    """The compiled extension module, or None when it was not built."""
    global _EXT
    if _EXT is None:
        try:
            from . import _C  # noqa: F401  (registers torch.ops.vllm_squeeze.*)

            _register_fakes()
            _EXT = _C
        except ImportError:
            _EXT = False
    return _EXT or None


def _register_fakes() -> None:
    # Shapes for torch.compile's tracing: the op returns [tokens, rows] in float32.
    @torch.library.register_fake("vllm_squeeze::lut_linear")
    def _(x, packed, lut, bits, cols, sparse):
        return x.new_empty((x.shape[0], packed.shape[0]), dtype=torch.float32)


class ReferenceKernel:
    """Dequantizes every segment on each call and multiplies in float32 (the path all others are tested against)."""

    name = "reference"

    def __init__(self, segments, in_features: int):
        self.segments = segments
        self.in_features = in_features

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, shape[-1]).float()
        outs = [x2 @ dequantize(s.qweight, s.lut, s.bits, s.sparse).T for s in self.segments]
        y = torch.cat(outs, dim=1) if len(outs) > 1 else outs[0]
        return y.to(x.dtype).reshape(*shape[:-1], y.shape[-1])


class CKernel:
    """Squeeze's C LUT kernels on packed 3/4-bit weights (float tables, exact path) plus the SELL sparse part.

    Segments of the same width are merged into one matrix (one call per layer for QKV and gate/up).
    """

    name = "c"

    def __init__(self, segments, in_features: int):
        if load_extension() is None:
            raise RuntimeError("vllm_squeeze: the C extension is not built (pip install the package with its build)")
        self.in_features = in_features
        self.parts = []
        runs: list[list] = []
        for s in segments:
            if runs and runs[-1][0].bits == s.bits:
                runs[-1].append(s)
            else:
                runs.append([s])
        for run in runs:
            bits = run[0].bits
            if bits not in (3, 4):
                raise ValueError(f"the C kernels take 3 or 4 bits, not {bits}")
            idx = torch.cat([unpack(s.qweight, bits) for s in run], dim=0).contiguous()
            lut = torch.zeros(idx.shape[0], 16, dtype=torch.float32)
            lut[:, : 1 << bits] = torch.cat([s.lut.float() for s in run], dim=0)
            packed = torch.ops.vllm_squeeze.pack_indices(idx, bits)
            sparse: list[torch.Tensor] = []
            if any(s.sparse is not None for s in run):
                parts = [
                    s.sparse
                    if s.sparse is not None
                    else Sparse(
                        torch.zeros(s.rows + 1, dtype=torch.int32),
                        torch.zeros(0, dtype=torch.int32),
                        torch.zeros(0),
                    )
                    for s in run
                ]
                csr = Sparse.concat_rows(parts)
                rowptr = csr.rowptr.contiguous()
                sparse = [rowptr] + list(
                    torch.ops.vllm_squeeze.sell_build(rowptr, csr.cols.contiguous(), csr.vals.float().contiguous())
                )
            self.parts.append((packed, lut, bits, sparse))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        outs = [
            torch.ops.vllm_squeeze.lut_linear(x2, packed, lut, bits, self.in_features, sparse)
            for packed, lut, bits, sparse in self.parts
        ]
        y = torch.cat(outs, dim=1) if len(outs) > 1 else outs[0]
        return y.to(x.dtype).reshape(*shape[:-1], y.shape[-1])


class TritonKernel:
    """The Triton LUT GEMM on SqueezeLLM's packed `qweight` (see triton_kernel.py), sparse part added after."""

    name = "triton"

    def __init__(self, segments, in_features: int):
        from . import triton_kernel  # noqa: F401  (fails without triton)

        self.segments = segments
        self.in_features = in_features
        self.sparse = []
        for s in segments:
            if s.sparse is None:
                self.sparse.append(None)
                continue
            self.sparse.append(
                torch.sparse_csr_tensor(
                    s.sparse.rowptr.to(torch.int64),
                    s.sparse.cols.to(torch.int64),
                    s.sparse.vals.float(),
                    size=(s.rows, in_features),
                )
            )

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        from .triton_kernel import lut_gemm

        shape = x.shape
        x2 = x.reshape(-1, shape[-1]).float().contiguous()
        outs = []
        for s, sp in zip(self.segments, self.sparse):
            y = lut_gemm(x2, s.qweight, s.lut.float().contiguous(), s.bits)
            if sp is not None:
                y = y + (sp.to(x2.device) @ x2.T).T
            outs.append(y)
        y = torch.cat(outs, dim=1) if len(outs) > 1 else outs[0]
        return y.to(x.dtype).reshape(*shape[:-1], y.shape[-1])


KERNELS: dict[str, Callable] = {"reference": ReferenceKernel, "c": CKernel, "triton": TritonKernel}


def choose(segments, device: torch.device | None = None) -> str:
    """The kernel name VLLM_SQUEEZE_KERNEL asks for, or the best available one."""
    want = os.environ.get("VLLM_SQUEEZE_KERNEL", "auto").lower()
    if want != "auto":
        if want not in KERNELS:
            raise ValueError(f"VLLM_SQUEEZE_KERNEL={want!r}: expected auto, reference, c or triton")
        return want
    on_gpu = device is not None and device.type == "cuda"
    if on_gpu:
        try:
            import triton  # noqa: F401

            return "triton"
        except ImportError:
            return "reference"
    if load_extension() is not None and all(s.bits in (3, 4) for s in segments):
        return "c"
    return "reference"


def prepare(segments, in_features: int, device: torch.device | None = None):
    """The kernel object for a loaded layer (called once, after loading)."""
    return KERNELS[choose(segments, device)](segments, in_features)
