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


def _base_class():
    from vllm.model_executor.layers.quantization.base_config import QuantizationConfig

    return QuantizationConfig


def _linear_method_base():
    from vllm.model_executor.layers.linear import LinearMethodBase

    return LinearMethodBase


import functools


@functools.lru_cache(maxsize=None)
def make_classes():
    """Builds the QuantizationConfig and LinearMethodBase subclasses (vLLM imported lazily)."""
    QuantizationConfig = _base_class()
    LinearMethodBase = _linear_method_base()

    class SqueezeConfig(QuantizationConfig):
        """SqueezeLLM non-uniform 2/3/4/8-bit weights with an optional dense-and-sparse split.

        Reads the `quantization_config` that `squeeze quantize` writes (quant_method "squeezellm",
        "wbits") and old SqueezeLLM checkpoints (`quant_config.json` with "wbits": 4). Per-tensor bit
        widths and which tensors have a sparse part are read from the checkpoint's safetensors
        headers (the lookup table's width is 2^bits).
        """

        def __init__(self, weight_bits: int, full_config: dict[str, Any] | None = None) -> None:
            super().__init__()
            if weight_bits not in GROUPS:
                raise SqueezeConfigError(
                    f"quantization_config: wbits {weight_bits} is not supported (2, 3, 4 or 8)"
                )
            self.weight_bits = weight_bits
            self.full_config = full_config or {}
            self.tensors: dict[str, TensorInfo] = {}

        def __repr__(self) -> str:
            return f"SqueezeConfig(weight_bits={self.weight_bits}, tensors={len(self.tensors)})"

        @classmethod
        def get_name(cls) -> str:
            return "squeeze"

        @classmethod
        def get_supported_act_dtypes(cls) -> list[torch.dtype]:
            return [torch.float32, torch.bfloat16, torch.float16]

        @classmethod
        def get_min_capability(cls) -> int:
            return 0

        @classmethod
        def get_config_filenames(cls) -> list[str]:
            return ["quant_config.json", "quantize_config.json"]

        @classmethod
        def from_config(cls, config: dict[str, Any]) -> "SqueezeConfig":
            bits = config.get("wbits", config.get("bits"))
            if bits is None:
                raise SqueezeConfigError("quantization_config: no 'wbits' (or 'bits') field")
            try:
                bits = int(bits)
            except (TypeError, ValueError):
                raise SqueezeConfigError(f"quantization_config: wbits {bits!r} is not an integer") from None
            return cls(bits, config)

        @classmethod
        def override_quantization_method(cls, hf_quant_cfg, user_quant, hf_config=None):
            method = str(hf_quant_cfg.get("quant_method", "")).lower()
            if method in ("squeezellm", "squeeze") and user_quant in (None, "squeeze", "squeezellm"):
                return "squeeze"
            return None

        def maybe_update_config(self, model_name: str, hf_config=None, revision=None) -> None:
            """Reads per-tensor bits and sparse parts from the checkpoint's headers."""
            if Path(model_name).is_dir():
                shapes = read_safetensors_shapes(model_name)
            else:
                from vllm.transformers_utils.config import get_safetensors_params_metadata

                meta = get_safetensors_params_metadata(model_name, revision=revision)
                shapes = {k: (v.get("dtype"), list(v.get("shape", []))) for k, v in meta.items()}
            self.set_tensor_shapes(shapes)

        def set_tensor_shapes(self, shapes: dict[str, tuple[str, list[int]]]) -> None:
            """Records each quantized tensor's bits and whether it has a sparse part."""
            tensors = {}
            for name, (_, shape) in shapes.items():
                if not name.endswith(".lookup_table"):
                    continue
                prefix = name[: -len(".lookup_table")]
                if len(shape) != 2:
                    raise SqueezeConfigError(f"{name}: lookup_table must be 2-D, got {shape}")
                k = shape[1]
                bits = k.bit_length() - 1
                if 1 << bits != k or bits not in GROUPS:
                    raise SqueezeConfigError(f"{name}: {k} table entries per row is not 2^bits (2, 3, 4, 8 bits)")
                tensors[prefix] = TensorInfo(bits, prefix + ".rows" in shapes)
            self.tensors = tensors

        def _checkpoint_prefixes(self, prefix: str) -> list[str]:
            """Checkpoint prefixes that a vLLM layer prefix stands for (merged layers: several)."""
            head, _, last = prefix.rpartition(".")
            mapping = getattr(self, "packed_modules_mapping", None) or {}
            parts = mapping.get(last)
            if parts is None:
                parts = {"qkv_proj": ["q_proj", "k_proj", "v_proj"], "gate_up_proj": ["gate_proj", "up_proj"]}.get(
                    last
                )
            if parts is None:
                return [prefix]
            return [f"{head}.{p}" if head else p for p in parts]

        def get_quant_method(self, layer: torch.nn.Module, prefix: str):
            from vllm.model_executor.layers.linear import LinearBase, UnquantizedLinearMethod

            if not isinstance(layer, LinearBase):
                return None
            names = self._checkpoint_prefixes(prefix)
            if self.tensors:
                infos = [self.tensors.get(n) for n in names]
                if all(i is None for i in infos):
                    return UnquantizedLinearMethod()
                if any(i is None for i in infos):
                    raise SqueezeConfigError(
                        f"{prefix}: some of {names} are quantized and some are not; a merged layer needs all or none"
                    )
            else:
                infos = [TensorInfo(self.weight_bits, False) for _ in names]
            return SqueezeLinearMethod(self, prefix, names, infos)

    class SqueezeLinearMethod(LinearMethodBase):
        """Loads a layer's SqueezeLLM tensors into this rank's shard and computes its product."""

        def __init__(self, config: SqueezeConfig, prefix: str, names: list[str], infos: list[TensorInfo]):
            self.config = config
            self.prefix = prefix
            self.names = names
            self.infos = infos

        def create_weights(
            self,
            layer: torch.nn.Module,
            input_size_per_partition: int,
            output_partition_sizes: list[int],
            input_size: int,
            output_size: int,
            params_dtype: torch.dtype,
            **extra_weight_attrs,
        ) -> None:
            # Every part is loaded by our own loader into per-shard pieces (bits and sparse sizes vary
            # per tensor), assembled in process_weights_after_loading.
            layer._sq_pieces = {}
            layer._sq_method = self
            layer._sq_in_part = input_size_per_partition
            layer._sq_in_full = input_size
            layer._sq_out_parts = list(output_partition_sizes)
            parts = ["qweight", "lookup_table"]
            if any(i.sparse for i in self.infos):
                parts += ["rows", "cols", "vals"]
            for part in parts:
                p = Parameter(torch.empty(0, dtype=torch.int32), requires_grad=False)
                p.weight_loader = _make_loader(layer, part)
                layer.register_parameter(part, p)

        def process_weights_after_loading(self, layer: torch.nn.Module) -> None:
            segments = assemble(layer, self)
            from .kernels import prepare

            layer._sq_segments = segments
            layer._sq_kernel = prepare(segments, layer._sq_in_part)
            # The placeholders are no longer needed; the kernel holds what it computes with.
            for part in _PARTS:
                if hasattr(layer, part) and isinstance(getattr(layer, part), Parameter):
                    delattr(layer, part)
            layer._sq_pieces = {}

        def apply(self, layer: torch.nn.Module, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
            y = layer._sq_kernel(x)
            if bias is not None:
                y = y + bias
            return y

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
