// CPU feature detection and the ISA level the kernels dispatch on (SQUEEZE_ISA, sq_set_isa).
#include "sq_dense.h"
#include "sq_isa.h"
#include <stdlib.h>
#include <string.h>
#ifdef SQ_X86
#include <cpuid.h>
#endif
#if defined(SQ_ARM) && defined(__linux__)
#include <sys/auxv.h>
// The kernel's hwcap bits (asm/hwcap.h), for C libraries that do not define them.
#define SQ_HWCAP_ASIMDHP (1ul << 10)
#define SQ_HWCAP_ASIMDDP (1ul << 20)
#define SQ_HWCAP2_I8MM (1ul << 13)
#elif defined(SQ_ARM) && defined(__APPLE__)
#include <sys/sysctl.h>
// 1 when the sysctl `name` (hw.optional.arm.FEAT_*) exists and is nonzero.
static int apple_feature(const char *name) {
    int v = 0;
    size_t n = sizeof v;
    return sysctlbyname(name, &v, &n, NULL, 0) == 0 && v != 0;
}
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
#ifdef SQ_ARM
    f |= SQ_CPU_NEON;
#if defined(__linux__)
    unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
    if (hw & SQ_HWCAP_ASIMDDP) f |= SQ_CPU_DOTPROD;
    if (hw2 & SQ_HWCAP2_I8MM) f |= SQ_CPU_I8MM;
    if (hw & SQ_HWCAP_ASIMDHP) f |= SQ_CPU_FP16;
#elif defined(__APPLE__)
    if (apple_feature("hw.optional.arm.FEAT_DotProd")) f |= SQ_CPU_DOTPROD;
    if (apple_feature("hw.optional.arm.FEAT_I8MM")) f |= SQ_CPU_I8MM;
    if (apple_feature("hw.optional.arm.FEAT_FP16")) f |= SQ_CPU_FP16;
#endif
#endif
    return f;
}

uint32_t sq_cpu_features(void) {
    if (g_features == 0xffffffffu) g_features = detect_features();
    return g_features;
}

int sq_isa_supported(void) {
    uint32_t f = sq_cpu_features();
#ifdef SQ_ARM
    if ((f & (SQ_CPU_DOTPROD | SQ_CPU_I8MM)) == (SQ_CPU_DOTPROD | SQ_CPU_I8MM)) return SQ_ISA_I8MM;
    if (f & SQ_CPU_DOTPROD) return SQ_ISA_DOTPROD;
    if (f & SQ_CPU_NEON) return SQ_ISA_NEON;
#endif
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
#ifdef SQ_ARM
            else if (!strcmp(env, "neon")) sq_isa_level = SQ_ISA_NEON;
            else if (!strcmp(env, "dotprod") && sq_isa_level >= SQ_ISA_DOTPROD) sq_isa_level = SQ_ISA_DOTPROD;
#endif
        }
    }
    return sq_isa_level;
}

int sq_set_isa(int level) {
    int s = sq_isa_supported();
    int l = level < 0 ? s : (level > s ? s : level);
#ifdef SQ_ARM
    if (l > SQ_ISA_SCALAR && l < SQ_ISA_NEON) l = SQ_ISA_SCALAR;  // an x86 level: none of ours
#endif
    sq_isa_level = l;
    return sq_isa_level;
}
