// SIMDe emulation of the x86 intrinsics lut.c uses, for scripts/harness/lut_emulation/harness.c only
// (lut.c includes it when built with -DSQ_LUT_EMULATE; the package build never does).
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#include <stdint.h>
#define SQ_X86 1
#define T_AVX2
#define T_AVX512
#define T_VNNI
#define INL inline
typedef simde__mmask32 __mmask32;
static inline float _mm512_reduce_add_ps(__m512 v) { float f[16]; _mm512_storeu_ps(f, v); float s = 0; for (int i = 0; i < 16; i++) s += f[i]; return s; }
static inline __m512i _mm512_cvtepu8_epi32(__m128i a) { uint8_t b[16]; int32_t o[16]; _mm_storeu_si128((__m128i *)b, a); for (int i = 0; i < 16; i++) o[i] = b[i]; return _mm512_loadu_si512(o); }
static inline __mmask32 _mm256_test_epi8_mask(__m256i a, __m256i b) { uint8_t x[32], y[32]; _mm256_storeu_si256((__m256i *)x, a); _mm256_storeu_si256((__m256i *)y, b); __mmask32 k = 0; for (int i = 0; i < 32; i++) if (x[i] & y[i]) k |= (__mmask32)1 << i; return k; }
static inline __m256i _mm256_mask_add_epi8(__m256i src, __mmask32 k, __m256i a, __m256i b) { uint8_t s[32], x[32], y[32]; _mm256_storeu_si256((__m256i *)s, src); _mm256_storeu_si256((__m256i *)x, a); _mm256_storeu_si256((__m256i *)y, b); for (int i = 0; i < 32; i++) if ((k >> i) & 1) s[i] = (uint8_t)(x[i] + y[i]); return _mm256_loadu_si256((__m256i *)s); }
#ifndef _CMP_GT_OQ
#define _CMP_GT_OQ SIMDE_CMP_GT_OQ
#endif
