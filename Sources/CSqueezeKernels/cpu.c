// CPU feature detection and the ISA level the kernels dispatch on (SQUEEZE_ISA, sq_set_isa).
#include "sq_dense.h"
#include "sq_isa.h"
#include <stdlib.h>
#include <string.h>
#ifdef SQ_X86
#include <cpuid.h>
#endif

static uint32_t g_features = 0xffffffffu;
int sq_isa_level = -1;

static uint32_t detect_features(void) {
    uint32_t f = 0;
#ifdef SQ_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) f |= SQ_CPU_AVX2;
    if (__builtin_cpu_supports("fma")) f |= SQ_CPU_FMA;
    unsigned a, b, c, d;
    if (__get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29))) f |= SQ_CPU_F16C;
    if (__builtin_cpu_supports("avx512f")) f |= SQ_CPU_AVX512F;
    if (__builtin_cpu_supports("avx512bw")) f |= SQ_CPU_AVX512BW;
    if (__builtin_cpu_supports("avx512vl")) f |= SQ_CPU_AVX512VL;
    if (__builtin_cpu_supports("avx512vbmi")) f |= SQ_CPU_AVX512VBMI;
    if (__builtin_cpu_supports("avx512vnni")) f |= SQ_CPU_AVX512VNNI;
    if (__get_cpuid_count(7, 1, &a, &b, &c, &d)) {
        if (a & (1u << 5)) f |= SQ_CPU_AVX512BF16;
        if (a & (1u << 4)) f |= SQ_CPU_AVXVNNI;
    }
#endif
    return f;
}

uint32_t sq_cpu_features(void) {
    if (g_features == 0xffffffffu) g_features = detect_features();
    return g_features;
}

int sq_isa_supported(void) {
    uint32_t f = sq_cpu_features();
    uint32_t need512 = SQ_CPU_AVX512F | SQ_CPU_AVX512BW | SQ_CPU_AVX512VL | SQ_CPU_FMA | SQ_CPU_F16C;
    if ((f & need512) == need512) return SQ_ISA_AVX512;
    uint32_t need2 = SQ_CPU_AVX2 | SQ_CPU_FMA | SQ_CPU_F16C;
    if ((f & need2) == need2) return SQ_ISA_AVX2;
    return SQ_ISA_SCALAR;
}

int sq_isa(void) {
    if (sq_isa_level < 0) {
        sq_isa_level = sq_isa_supported();
        const char *env = getenv("SQUEEZE_ISA");
        if (env) {
            if (!strcmp(env, "scalar")) sq_isa_level = SQ_ISA_SCALAR;
            else if (!strcmp(env, "avx2") && sq_isa_level >= SQ_ISA_AVX2) sq_isa_level = SQ_ISA_AVX2;
        }
    }
    return sq_isa_level;
}

int sq_set_isa(int level) {
    int s = sq_isa_supported();
    sq_isa_level = level < 0 ? s : (level > s ? s : level);
    return sq_isa_level;
}
