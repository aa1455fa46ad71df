"""Shared helpers: random SqueezeLLM tensors and vLLM linear layers built for a given TP rank without workers."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from unittest import mock

import pytest
import torch

from vllm_squeeze.layout import Sparse, pack

REPO = Path(__file__).resolve().parents[2]


def random_tensor(rows: int, cols: int, bits: int, density: float = 0.0, seed: int = 0):
    """A random SqueezeLLM tensor: (qweight, lookup_table F16, Sparse or None) and the indices."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, 1 << bits, (rows, cols), generator=g, dtype=torch.int64).to(torch.uint8)
    lut = torch.sort(torch.randn(rows, 1 << bits, generator=g), dim=1).values.half()
    sparse = None
    if density > 0:
        mask = torch.rand(rows, cols, generator=g) < density
        counts = mask.sum(dim=1)
        rowptr = torch.zeros(rows + 1, dtype=torch.int32)
        rowptr[1:] = torch.cumsum(counts, 0).to(torch.int32)
        cols_ = mask.nonzero()[:, 1].to(torch.int32)
        vals = torch.randn(cols_.numel(), generator=g).half()
        sparse = Sparse(rowptr, cols_, vals)
    return pack(idx, bits), lut, sparse, idx


@contextlib.contextmanager
def tp(rank: int, size: int):
    """Makes vLLM's linear layers see tensor-parallel rank `rank` of `size` (no process group needed)."""
    import vllm.model_executor.layers.linear as L

    with mock.patch.object(L, "get_tensor_model_parallel_rank", return_value=rank), mock.patch.object(
        L, "get_tensor_model_parallel_world_size", return_value=size
    ):
        yield


@pytest.fixture(scope="session")
def vllm_config():
    from vllm.config import VllmConfig, set_current_vllm_config

    cfg = VllmConfig()
    with set_current_vllm_config(cfg):
        yield cfg


def squeeze_binary() -> str | None:
    """The `squeeze` CLI: $SQUEEZE_BIN, this checkout's release build, or one on PATH."""
    for c in (os.environ.get("SQUEEZE_BIN"), REPO / ".build" / "release" / "squeeze", shutil.which("squeeze")):
        if c and Path(c).is_file():
            return str(c)
    return None
