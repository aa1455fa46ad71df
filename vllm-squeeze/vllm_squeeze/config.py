"""The `squeeze` quantization method for vLLM: config, per-layer loading with tensor parallelism, apply."""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn import Parameter

from .layout import GROUPS, Sparse, SqueezeLayoutError, bits_of_table, group, input_count

_PARTS = ("qweight", "lookup_table", "rows", "cols", "vals")


class SqueezeConfigError(ValueError):
    """A checkpoint or config that the `squeeze` method cannot load (the message names what)."""


def read_safetensors_shapes(model_dir: str | os.PathLike) -> dict[str, tuple[str, list[int]]]:
    """name -> (dtype, shape) of every tensor in the directory's *.safetensors files (headers only)."""
    out: dict[str, tuple[str, list[int]]] = {}
    for f in sorted(Path(model_dir).glob("*.safetensors")):
        with open(f, "rb") as fh:
            raw = fh.read(8)
            if len(raw) != 8:
                raise SqueezeConfigError(f"{f}: truncated safetensors header")
            (n,) = struct.unpack("<Q", raw)
            if n > 100 * 1024 * 1024:
                raise SqueezeConfigError(f"{f}: safetensors header of {n} bytes is implausible")
            try:
                header = json.loads(fh.read(n))
            except ValueError as e:
                raise SqueezeConfigError(f"{f}: unreadable safetensors header ({e})") from None
        for name, info in header.items():
            if name != "__metadata__":
                out[name] = (info["dtype"], list(info["shape"]))
    return out


@dataclass
class TensorInfo:
    """What the checkpoint holds for one quantized linear tensor (by its checkpoint prefix)."""

    bits: int
    sparse: bool


@dataclass
class Segment:
    """One checkpoint tensor's share of a layer on this rank: output rows in layer order."""

    bits: int
    qweight: torch.Tensor  # int32 [in_part * bits / 32, rows]
    lut: torch.Tensor  # [rows, 2^bits]
    sparse: Sparse | None  # rows x in_part
    rows: int


import functools


@functools.lru_cache(maxsize=None)
def make_classes():
    """The QuantizationConfig and LinearMethodBase subclasses (vllm_squeeze.method imports vLLM)."""
    from .method import SqueezeConfig, SqueezeLinearMethod

    return SqueezeConfig, SqueezeLinearMethod


# ---------------------------------------------------------------------------------------------------
# Loading: each checkpoint tensor arrives (with a shard id for merged layers) and is cut to this rank.


@dataclass
class ShardPlan:
    """Where one checkpoint tensor lands on this rank.

    Output rows [out_start, out_start + out_size) of the checkpoint tensor become segment `index` of
    the layer; input columns [in_start, in_start + in_size) are kept.
    """

    index: int
    out_start: int
    out_size: int
    in_start: int
    in_size: int


def _layer_kind(layer) -> str:
    from vllm.model_executor.layers import linear as L

    if isinstance(layer, L.QKVParallelLinear):
        return "qkv"
    if isinstance(layer, L.MergedColumnParallelLinear):
        return "merged"
    if isinstance(layer, L.RowParallelLinear):
        return "row"
    if isinstance(layer, L.ColumnParallelLinear):
        return "column"
    return "replicated"


def shard_plan(layer, shard_id, full_rows: int, full_cols: int, name: str) -> ShardPlan:
    """The rows and columns of a checkpoint tensor that this rank keeps (see `ShardPlan`)."""
    kind = _layer_kind(layer)
    tp_rank, tp_size = getattr(layer, "tp_rank", 0), getattr(layer, "tp_size", 1)
    if kind == "replicated":
        return ShardPlan(0, 0, full_rows, 0, full_cols)
    if kind == "row":
        in_size = layer.input_size_per_partition
        if in_size * tp_size != full_cols:
            raise SqueezeConfigError(f"{name}: {full_cols} inputs do not split into {tp_size} x {in_size}")
        return ShardPlan(0, 0, full_rows, tp_rank * in_size, in_size)
    if kind == "column":
        size = layer.output_size_per_partition
        return ShardPlan(0, tp_rank * size, size, 0, full_cols)
    if kind == "merged":
        if shard_id is None:
            raise SqueezeConfigError(f"{name}: a merged layer's tensor needs a shard id (fused checkpoints are not supported)")
        idx = int(shard_id)
        size = layer.output_sizes[idx] // tp_size
        return ShardPlan(idx, tp_rank * size, size, 0, full_cols)
    # QKV: q is split over ranks; k and v are split, or replicated when there are fewer KV heads than ranks.
    if shard_id not in ("q", "k", "v"):
        raise SqueezeConfigError(f"{name}: QKV shard id {shard_id!r} (fused qkv checkpoints are not supported)")
    if shard_id == "q":
        size = layer.num_heads * layer.head_size
        return ShardPlan(0, tp_rank * size, size, 0, full_cols)
    head = layer.head_size if shard_id == "k" else layer.v_head_size
    size = layer.num_kv_heads * head
    start = (tp_rank // layer.num_kv_head_replicas) * size
    return ShardPlan(1 if shard_id == "k" else 2, start, size, 0, full_cols)


def _make_loader(layer, part: str):
    def loader(param, loaded_weight: torch.Tensor, loaded_shard_id=None):
        key = 0 if loaded_shard_id is None else loaded_shard_id
        layer._sq_pieces.setdefault(key, {})[part] = loaded_weight.detach().to("cpu")

    return loader


def _shard_index(layer, key) -> int:
    if key in ("q", "k", "v"):
        return {"q": 0, "k": 1, "v": 2}[key]
    return int(key)


def assemble(layer, method) -> list[Segment]:
    """Cuts every loaded checkpoint tensor to this rank and orders the pieces as the layer's outputs."""
    pieces = layer._sq_pieces
    expected = len(method.names)
    if len(pieces) != expected:
        raise SqueezeConfigError(
            f"{method.prefix}: loaded {len(pieces)} of the {expected} checkpoint tensors {method.names}"
        )
    segments: list[Segment | None] = [None] * expected
    for key, parts in pieces.items():
        idx = _shard_index(layer, key) if expected > 1 else 0
        name = method.names[idx] if idx < expected else method.prefix
        shard_id = None if expected == 1 else key
        segments[idx] = load_segment(layer, shard_id, parts, name, method.infos[idx])
    return segments  # type: ignore[return-value]


def load_segment(layer, shard_id, parts: dict[str, torch.Tensor], name: str, info: TensorInfo) -> Segment:
    """One checkpoint tensor's pieces (qweight, lookup_table, sparse) cut to this rank."""
    for p in ("qweight", "lookup_table"):
        if p not in parts:
            raise SqueezeConfigError(f"{name}.{p}: missing from the checkpoint")
    qweight, lut = parts["qweight"], parts["lookup_table"]
    if qweight.dtype != torch.int32 or qweight.dim() != 2:
        raise SqueezeConfigError(f"{name}.qweight: expected a 2-D int32 tensor, got {qweight.dtype} {tuple(qweight.shape)}")
    try:
        bits = bits_of_table(lut, name)
        full_cols = input_count(qweight, bits, name + ".qweight")
    except SqueezeLayoutError as e:
        raise SqueezeConfigError(str(e)) from None
    full_rows = qweight.shape[1]
    if lut.shape[0] != full_rows:
        raise SqueezeConfigError(f"{name}.lookup_table: {lut.shape[0]} rows, qweight has {full_rows}")
    sparse = None
    if any(p in parts for p in ("rows", "cols", "vals")):
        for p in ("rows", "cols", "vals"):
            if p not in parts:
                raise SqueezeConfigError(f"{name}.{p}: missing (the sparse part needs rows, cols and vals)")
        sparse = Sparse(parts["rows"].to(torch.int32), parts["cols"].to(torch.int32), parts["vals"].float())
        try:
            sparse.check(full_rows, full_cols, name)
        except SqueezeLayoutError as e:
            raise SqueezeConfigError(str(e)) from None
    plan = shard_plan(layer, shard_id, full_rows, full_cols, name)
    r0, r1 = plan.out_start, plan.out_start + plan.out_size
    if r1 > full_rows:
        raise SqueezeConfigError(f"{name}: rank needs rows {r0}..<{r1} of {full_rows}")
    qweight, lut = qweight[:, r0:r1], lut[r0:r1]
    if sparse is not None:
        sparse = sparse.row_slice(r0, r1)
    if plan.in_size != full_cols:
        g_in, g_words = group(bits, name)
        c0, c1 = plan.in_start, plan.in_start + plan.in_size
        if c0 % g_in or c1 % g_in:
            raise SqueezeConfigError(
                f"{name}: tensor parallelism splits the {full_cols} inputs at {c0}..<{c1}, but {bits}-bit "
                f"packing holds {g_in} inputs per group of {g_words} word(s): the split must fall on multiples "
                f"of {g_in} (use a tensor-parallel size that divides {full_cols // g_in})"
            )
        qweight = qweight[c0 // g_in * g_words : c1 // g_in * g_words]
        if sparse is not None:
            sparse = sparse.column_slice(c0, c1)
    return Segment(bits, qweight.contiguous(), lut.contiguous(), sparse, r1 - r0)
