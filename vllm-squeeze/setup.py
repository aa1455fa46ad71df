"""Builds vllm_squeeze._C from csrc/ops.cpp and this repository's Sources/CSqueezeKernels/*.c.

The C kernels are compiled from the repository by path (globbed, so added or renamed files need no
change here), never copied. SQUEEZE_KERNEL_SOURCES points elsewhere; VLLM_SQUEEZE_NO_EXT=1 skips the
extension (the PyTorch reference path still works).
"""

import os
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent
KERNELS = Path(os.environ.get("SQUEEZE_KERNEL_SOURCES", HERE.parent / "Sources" / "CSqueezeKernels"))

ext_modules, cmdclass = [], {}
if os.environ.get("VLLM_SQUEEZE_NO_EXT") != "1":
    from torch.utils.cpp_extension import BuildExtension, CppExtension

    c_sources = sorted(str(p) for p in KERNELS.glob("*.c"))
    if not c_sources:
        raise SystemExit(f"setup.py: no C kernel sources in {KERNELS} (set SQUEEZE_KERNEL_SOURCES)")
    ext_modules = [
        CppExtension(
            "vllm_squeeze._C",
            sources=[str(HERE / "csrc" / "ops.cpp")] + c_sources,
            include_dirs=[str(KERNELS / "include"), str(KERNELS)],
            # Baseline x86-64: the kernels pick AVX2 / AVX-512 variants at run time (sq_isa).
            extra_compile_args={"cxx": ["-O3", "-fno-math-errno", "-Wno-unused-function"]},
            libraries=["m"],
        )
    ]
    cmdclass = {"build_ext": BuildExtension.with_options(use_ninja=False)}

setup(ext_modules=ext_modules, cmdclass=cmdclass)
