#!/usr/bin/env bash
# Cross-compiles the C kernel target (Sources/CSqueezeKernels) with the ARM64 kernel harness and runs
# it under qemu-aarch64 on CPU models with and without the dot-product and int8 matrix-multiply
# extensions, and with SQUEEZE_ISA forcing each level: every NEON kernel against the scalar kernel.
# Needs Debian's gcc-aarch64-linux-gnu, libc6-dev-arm64-cross and qemu-user (see .ci/run); builds
# with aarch64-linux-gnu-gcc and, when present, also with clang (--target=aarch64-linux-gnu, the
# compiler SwiftPM uses), linking with the cross gcc.
#
# Usage (repository root): bash scripts/arm64/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
S=Sources/CSqueezeKernels
OUT="${TMPDIR:-/tmp}/squeeze-arm64"
mkdir -p "$OUT"
CFLAGS=(-O2 -Wall -Wextra -Werror -I"$S/include" -I"$S")

build() {  # build <compiler-name> <output>
    local cc="$1" bin="$2" objs=()
    for f in "$S"/*.c scripts/arm64/kernel_harness.c; do
        local o="$OUT/$cc-$(basename "${f%.c}").o"
        if [ "$cc" = gcc ]; then
            aarch64-linux-gnu-gcc "${CFLAGS[@]}" -c "$f" -o "$o"
        else
            clang --target=aarch64-linux-gnu --sysroot=/usr/aarch64-linux-gnu "${CFLAGS[@]}" -c "$f" -o "$o"
        fi
        objs+=("$o")
    done
    aarch64-linux-gnu-gcc -static -o "$bin" "${objs[@]}" -lm -lpthread
}

compilers=(gcc)
if command -v clang >/dev/null && clang --target=aarch64-linux-gnu -x c -c /dev/null -o /dev/null 2>/dev/null; then
    compilers+=(clang)
fi

# qemu CPU model, SQUEEZE_ISA (or "-"), the level the harness must then be at.
runs=(
    "max - i8mm"
    "max dotprod dotprod"
    "max neon neon"
    "max scalar scalar"
    "cortex-a76 - dotprod"
    "cortex-a57 - neon"
)
status=0
for cc in "${compilers[@]}"; do
    bin="$OUT/kernel_harness-$cc"
    build "$cc" "$bin"
    for r in "${runs[@]}"; do
        read -r cpu isa want <<<"$r"
        echo "== $cc, qemu -cpu $cpu, SQUEEZE_ISA=${isa/-/(unset)}"
        if [ "$isa" = - ]; then
            qemu-aarch64 -cpu "$cpu" "$bin" "$want" || status=1
        else
            SQUEEZE_ISA="$isa" qemu-aarch64 -cpu "$cpu" "$bin" "$want" || status=1
        fi
    done
done
[ $status -eq 0 ] && echo "arm64 harness: all runs passed" || echo "arm64 harness: FAILED"
exit $status
