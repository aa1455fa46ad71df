"""Builds vllm_squeeze._C from csrc/ops.cpp and this repository's Sources/CSqueezeKernels/*.c.

The C kernels are compiled from the repository by path (globbed at build time, so added or renamed
files need no change here), never copied: build_ext compiles them with C flags into objects that the
extension links. SQUEEZE_KERNEL_SOURCES points elsewhere; VLLM_SQUEEZE_NO_EXT=1 skips the extension
(the PyTorch reference path still works).
"""

import os
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent
KERNELS = Path(os.environ.get("SQUEEZE_KERNEL_SOURCES", HERE.parent / "Sources" / "CSqueezeKernels")).resolve()
# Baseline x86-64: the kernels pick AVX2 / AVX-512 variants at run time (sq_isa).
C_FLAGS = ["-O3", "-std=gnu11", "-fPIC", "-fno-math-errno", "-Wno-unused-function"]

ext_modules, cmdclass = [], {}
if os.environ.get("VLLM_SQUEEZE_NO_EXT") != "1":
    from torch.utils.cpp_extension import BuildExtension, CppExtension

    class BuildWithKernels(BuildExtension):
        """Compiles the C kernel sources (outside this package) to objects the extension links."""

        def build_extension(self, ext):
            c_sources = sorted(str(p) for p in KERNELS.glob("*.c"))
            if not c_sources:
                raise SystemExit(f"setup.py: no C kernel sources in {KERNELS} (set SQUEEZE_KERNEL_SOURCES)")
            objects = self.compiler.compile(
                c_sources,
                output_dir=os.path.join(self.build_temp, "csqueeze"),
                include_dirs=[str(KERNELS / "include"), str(KERNELS)],
                extra_postargs=C_FLAGS,
            )
            ext.extra_objects = list(ext.extra_objects or []) + objects
            super().build_extension(ext)

    ext_modules = [
        CppExtension(
            "vllm_squeeze._C",
            sources=["csrc/ops.cpp"],
            include_dirs=[str(KERNELS / "include")],
            extra_compile_args={"cxx": ["-O3"]},
            libraries=["m"],
        )
    ]
    cmdclass = {"build_ext": BuildWithKernels.with_options(use_ninja=False)}

setup(ext_modules=ext_modules, cmdclass=cmdclass)
