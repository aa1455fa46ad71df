// Private to CSqueezeKernels (not under include/): the per-function ISA target attributes and the
// small helpers every kernel file shares. Variants carry these attributes so that the library builds
// for baseline x86-64 and picks a variant at run time on sq_isa() (docs/kernels.md).
#ifndef SQ_ISA_H
#define SQ_ISA_H
#include <stdint.h>
#include <string.h>

#if defined(SQ_LUT_EMULATE)
// Validation build of lut.c only (scripts/harness/lut_emulation): SIMDe stands in for the intrinsics and
// defines SQ_X86, T_AVX2, T_AVX512, T_VNNI and INL without target attributes.
#include "sq_lut_emulate.h"
#elif defined(__x86_64__)
#include <immintrin.h>
#define SQ_X86 1
#define T_AVX2 __attribute__((target("avx2,fma,f16c")))
#define T_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c,avx2")))
#define T_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma,f16c,avx2")))
#elif defined(__aarch64__)
// ARM64: NEON (Advanced SIMD) is baseline; the dot-product and int8 matrix-multiply extensions are
// per-function targets chosen at run time. "arch=" rather than "+feature": GCC 12's arm_neon.h
// defines the dot-product intrinsics under an armv8.2-a pragma.
#include <arm_neon.h>
#define SQ_ARM 1
#define T_NEON
#define T_DOTPROD __attribute__((target("arch=armv8.2-a+dotprod")))
#define T_I8MM __attribute__((target("arch=armv8.2-a+dotprod+i8mm")))
#endif

#ifndef INL
#define INL __attribute__((always_inline)) inline
#endif

// The level sq_isa() returns once it is known, else -1 (cpu.c). sq_isa_fast() reads it inline, so
// that hot entry points need no call per dispatch.
extern __attribute__((visibility("hidden"))) int sq_isa_level;
int sq_isa(void);
static inline int sq_isa_fast(void) {
    int l = sq_isa_level;
    return l >= 0 ? l : sq_isa();
}

// SQ_CAT(name, suffix) -> name_suffix after expanding both: names the functions of an include template.
#define SQ_CAT_(a, b) a##_##b
#define SQ_CAT(a, b) SQ_CAT_(a, b)
// SQ_GLUE(name, suffix) -> namesuffix after expanding both.
#define SQ_GLUE_(a, b) a##b
#define SQ_GLUE(a, b) SQ_GLUE_(a, b)

#ifdef SQ_ARM
// Sum of the four lanes of v.
static INL float sq_hsum4(float32x4_t v) { return vaddvq_f32(v); }
#endif

#ifdef SQ_X86
// Sum of the eight lanes of v.
T_AVX2 static INL float sq_hsum8(__m256 v) {
    __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}
// Maximum of the eight lanes of v.
T_AVX2 static INL float sq_hmax8(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}
#endif

// One IEEE half as a float (exact; subnormals, infinities and NaNs kept). Inline, so that the
// kernels' scalar tails need no call; sq_f16_to_f32_1 (convert.c) is the exported form.
static inline float sq_f16_to_f32_inl(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) bits = sign;
        else {
            // subnormal: normalise
            int e = -1;
            do { mant <<= 1; e++; } while (!(mant & 0x400));
            mant &= 0x3ff;
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | (mant << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

// One bfloat16 as a float (its bits are the float's upper half).
static inline float sq_bf16_to_f32_inl(uint16_t h) {
    uint32_t b = (uint32_t)h << 16;
    float f;
    memcpy(&f, &b, 4);
    return f;
}

#endif
