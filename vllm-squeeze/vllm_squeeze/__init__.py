"""vLLM plugin for Squeeze / SqueezeLLM models: the quantization method `squeeze`.

Installed with its entry point in `vllm.general_plugins`, vLLM calls `register()` in every process;
then `LLM(model=DIR, quantization="squeeze")` or `vllm serve DIR --quantization squeeze` loads a
directory written by `squeeze quantize` (or an old SqueezeLLM checkpoint).
"""

from __future__ import annotations

__all__ = ["register", "has_c_extension"]

_registered = False


def register() -> None:
    """Registers `squeeze` (and the alias `squeezellm`) with vLLM's quantization registry."""
    global _registered
    if _registered:
        return
    from vllm.model_executor.layers.quantization import register_quantization_config

    from .config import make_classes

    config_cls, _ = make_classes()
    register_quantization_config("squeeze")(config_cls)
    _registered = True


def has_c_extension() -> bool:
    """Whether the C kernels were built into this installation."""
    from .kernels import load_extension

    return load_extension() is not None
