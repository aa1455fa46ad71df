// F16 and BF16 conversions, one value and arrays (F16C variants chosen at run time on sq_isa_fast()).
#include "sq_dense.h"
#include "sq_isa.h"

float sq_f16_to_f32_1(uint16_t h) { return sq_f16_to_f32_inl(h); }

uint16_t sq_f32_to_f16_1(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t absx = x & 0x7fffffffu;
    if (absx > 0x7f800000u) return (uint16_t)(sign | 0x7e00 | ((absx >> 13) & 0x3ff)); // NaN
    if (absx >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); // overflow -> inf (round-to-nearest)
    if (absx < 0x38800000u) {
        // subnormal or zero in f16
        if (absx < 0x33000000u) return (uint16_t)sign; // rounds to 0
        uint32_t e = absx >> 23;
        uint32_t m = (absx & 0x7fffff) | 0x800000;
        int s = 126 - (int)e; // value = m * 2^(e-150); f16 subnormal unit is 2^-24
        uint32_t r = m >> s;
        uint32_t rem = m & ((1u << s) - 1);
        uint32_t half = 1u << (s - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = absx - 0x38000000u; // rebias exponent by (127-15) << 23
    uint32_t m = r >> 13;
    uint32_t rem = r & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (m & 1))) m++;
    return (uint16_t)(sign | m);
}

static inline uint16_t f32_to_bf16_1(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40);
    uint32_t lsb = (x >> 16) & 1;
    x += 0x7fff + lsb;
    return (uint16_t)(x >> 16);
}

// ---------------------------------------------------------------- vector conversions
#ifdef SQ_X86
T_AVX2 static void f16_to_f32_avx2(const uint16_t *s, float *d, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(d + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + i))));
    for (; i < n; i++) d[i] = sq_f16_to_f32_inl(s[i]);
}
T_AVX2 static void f32_to_f16_avx2(const float *s, uint16_t *d, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(d + i), _mm256_cvtps_ph(_mm256_loadu_ps(s + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) d[i] = sq_f32_to_f16_1(s[i]);
}
#endif

#ifdef SQ_ARM
// fcvtl / fcvtn: exact widening; narrowing rounds to nearest even (the default FPCR mode), keeps
// subnormals (FZ16 off) and quiets NaNs keeping their top payload bits, as sq_f32_to_f16_1.
static void f16_to_f32_neon(const uint16_t *s, float *d, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(s + i));
        vst1q_f32(d + i, vcvt_f32_f16(vget_low_f16(h)));
        vst1q_f32(d + i + 4, vcvt_high_f32_f16(h));
    }
    for (; i < n; i++) d[i] = sq_f16_to_f32_inl(s[i]);
}
static void f32_to_f16_neon(const float *s, uint16_t *d, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        float16x8_t h = vcvt_high_f16_f32(vcvt_f16_f32(vld1q_f32(s + i)), vld1q_f32(s + i + 4));
        vst1q_u16(d + i, vreinterpretq_u16_f16(h));
    }
    for (; i < n; i++) d[i] = sq_f32_to_f16_1(s[i]);
}
static void bf16_to_f32_neon(const uint16_t *s, float *d, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint16x8_t h = vld1q_u16(s + i);
        vst1q_f32(d + i, vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(h), 16)));
        vst1q_f32(d + i + 4, vreinterpretq_f32_u32(vshll_high_n_u16(h, 16)));
    }
    for (; i < n; i++) d[i] = sq_bf16_to_f32_inl(s[i]);
}
// Round to nearest even on the bits, NaNs quieted, as f32_to_bf16_1.
static inline uint16x4_t f32_to_bf16_4_neon(float32x4_t v) {
    uint32x4_t x = vreinterpretq_u32_f32(v);
    uint32x4_t lsb = vandq_u32(vshrq_n_u32(x, 16), vdupq_n_u32(1));
    uint32x4_t r = vshrq_n_u32(vaddq_u32(x, vaddq_u32(lsb, vdupq_n_u32(0x7fff))), 16);
    uint32x4_t nan = vcgtq_u32(vandq_u32(x, vdupq_n_u32(0x7fffffffu)), vdupq_n_u32(0x7f800000u));
    uint32x4_t q = vorrq_u32(vshrq_n_u32(x, 16), vdupq_n_u32(0x40));
    return vmovn_u32(vbslq_u32(nan, q, r));
}
static void f32_to_bf16_neon(const float *s, uint16_t *d, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1_u16(d + i, f32_to_bf16_4_neon(vld1q_f32(s + i)));
    for (; i < n; i++) d[i] = f32_to_bf16_1(s[i]);
}
#endif

void sq_f16_to_f32(const uint16_t *src, float *dst, int64_t n) {
#ifdef SQ_X86
    if (sq_isa_fast() >= SQ_ISA_AVX2) { f16_to_f32_avx2(src, dst, n); return; }
#endif
#ifdef SQ_ARM
    if (sq_isa_fast() >= SQ_ISA_NEON) { f16_to_f32_neon(src, dst, n); return; }
#endif
    for (int64_t i = 0; i < n; i++) dst[i] = sq_f16_to_f32_inl(src[i]);
}

void sq_f32_to_f16(const float *src, uint16_t *dst, int64_t n) {
#ifdef SQ_X86
    if (sq_isa_fast() >= SQ_ISA_AVX2) { f32_to_f16_avx2(src, dst, n); return; }
#endif
#ifdef SQ_ARM
    if (sq_isa_fast() >= SQ_ISA_NEON) { f32_to_f16_neon(src, dst, n); return; }
#endif
    for (int64_t i = 0; i < n; i++) dst[i] = sq_f32_to_f16_1(src[i]);
}

void sq_bf16_to_f32(const uint16_t *src, float *dst, int64_t n) {
#ifdef SQ_ARM
    if (sq_isa_fast() >= SQ_ISA_NEON) { bf16_to_f32_neon(src, dst, n); return; }
#endif
    for (int64_t i = 0; i < n; i++) dst[i] = sq_bf16_to_f32_inl(src[i]);
}

void sq_f32_to_bf16(const float *src, uint16_t *dst, int64_t n) {
#ifdef SQ_ARM
    if (sq_isa_fast() >= SQ_ISA_NEON) { f32_to_bf16_neon(src, dst, n); return; }
#endif
    for (int64_t i = 0; i < n; i++) dst[i] = f32_to_bf16_1(src[i]);
}

