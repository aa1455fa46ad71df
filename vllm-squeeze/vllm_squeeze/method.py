"""vLLM's side of the `squeeze` method: the QuantizationConfig and LinearMethodBase subclasses.

Module-level classes, so that vLLM can pickle the config into its worker processes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.nn import Parameter
from vllm.model_executor.layers.linear import LinearMethodBase
from vllm.model_executor.layers.quantization.base_config import QuantizationConfig

from .config import _PARTS, SqueezeConfigError, TensorInfo, _make_loader, assemble, read_safetensors_shapes
from .layout import GROUPS


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
        # Placeholder dtypes as on disk (vLLM warns when a loaded tensor's dtype differs).
        dtypes = {"lookup_table": torch.float16, "vals": torch.float16}
        for part in parts:
            p = Parameter(torch.empty(0, dtype=dtypes.get(part, torch.int32)), requires_grad=False)
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

