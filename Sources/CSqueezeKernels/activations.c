// Activation kernels: softmax, SwiGLU, log-sum-exp, argmax, with a vectorised exp (Cephes-style,
// max rel. error ~2 ulp); the vector bodies are the template activation_kernels.h, one per ISA.
#include "sq_dense.h"
#include "sq_isa.h"
#include <math.h>
#include <float.h>

#ifdef SQ_X86
// p * 2^n through the exponent field, in two halves so that n = 128 does not overflow it.
T_AVX2 static inline __m256 scale2n_avx2(__m256 p, __m256 n) {
    __m256i ni = _mm256_cvtps_epi32(n);
    __m256i half = _mm256_srai_epi32(ni, 1);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(half, _mm256_set1_epi32(127)), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(ni, half), _mm256_set1_epi32(127)), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

#include "sq_vec_avx512.h"
#define VSCALE2N(p, n) _mm512_scalef_ps(p, n)
#define EXP_LO -103.0f
#include "activation_kernels.h"

#include "sq_vec_avx2.h"
#define VSCALE2N(p, n) scale2n_avx2(p, n)
#define EXP_LO -87.3f
#include "activation_kernels.h"
#endif

#ifdef SQ_ARM
// p * 2^n through the exponent field, in two halves so that n = 128 does not overflow it.
static inline float32x4_t scale2n_neon(float32x4_t p, float32x4_t n) {
    int32x4_t ni = vcvtnq_s32_f32(n), half = vshrq_n_s32(ni, 1);
    float32x4_t s1 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(half, vdupq_n_s32(127)), 23));
    float32x4_t s2 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(vsubq_s32(ni, half), vdupq_n_s32(127)), 23));
    return vmulq_f32(vmulq_f32(p, s1), s2);
}

#include "sq_vec_neon.h"
#define VSCALE2N(p, n) scale2n_neon(p, n)
#define EXP_LO -87.3f
#include "activation_kernels.h"
#endif

void sq_silu_mul_backward_f32(const float *g, const float *u, float *dg, float *du, int64_t n) {
#ifdef SQ_X86
    if (sq_isa() >= SQ_ISA_AVX512) { silu_mul_backward_avx512(g, u, dg, du, n); return; }
    if (sq_isa() >= SQ_ISA_AVX2) { silu_mul_backward_avx2(g, u, dg, du, n); return; }
#endif
#ifdef SQ_ARM
    if (sq_isa() >= SQ_ISA_NEON) { silu_mul_backward_neon(g, u, dg, du, n); return; }
#endif
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i], s = 1.0f / (1.0f + expf(-gi)), da = dg[i];
        du[i] = da * gi * s;
        dg[i] = da * u[i] * s * (1.0f + gi * (1.0f - s));
    }
}

float sq_softmax_f32(float *x, int64_t n) { return sq_softmax_scaled_f32(x, n, 1.0f); }

float sq_softmax_scaled_f32(float *x, int64_t n, float scale) {
    if (n <= 0) return -INFINITY;
#ifdef SQ_X86
    if (sq_isa() >= SQ_ISA_AVX512) return softmax_avx512(x, n, scale);
    if (sq_isa() >= SQ_ISA_AVX2) return softmax_avx2(x, n, scale);
#endif
#ifdef SQ_ARM
    if (sq_isa() >= SQ_ISA_NEON) return softmax_neon(x, n, scale);
#endif
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    if (mx == -INFINITY) return -INFINITY;
    double s = 0;
    for (int64_t i = 0; i < n; i++) { x[i] = expf(x[i] - mx); s += x[i]; }
    float inv = (float)(scale / s);
    for (int64_t i = 0; i < n; i++) x[i] *= inv;
    return (float)log(s) + mx;
}

float sq_logsumexp_f32(const float *x, int64_t n) {
    if (n <= 0) return -INFINITY;
#ifdef SQ_X86
    if (sq_isa() >= SQ_ISA_AVX512) return lse_avx512(x, n);
    if (sq_isa() >= SQ_ISA_AVX2) return lse_avx2(x, n);
#endif
#ifdef SQ_ARM
    if (sq_isa() >= SQ_ISA_NEON) return lse_neon(x, n);
#endif
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    if (mx == -INFINITY) return -INFINITY;
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += expf(x[i] - mx);
    return (float)log(s) + mx;
}

void sq_silu_mul_f32(const float *g, const float *u, float *out, int64_t n) {
#ifdef SQ_X86
    if (sq_isa() >= SQ_ISA_AVX512) { silu_mul_avx512(g, u, out, n); return; }
    if (sq_isa() >= SQ_ISA_AVX2) { silu_mul_avx2(g, u, out, n); return; }
#endif
#ifdef SQ_ARM
    if (sq_isa() >= SQ_ISA_NEON) { silu_mul_neon(g, u, out, n); return; }
#endif
    for (int64_t i = 0; i < n; i++) out[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

int64_t sq_argmax_f32(const float *x, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++) if (x[i] > x[best]) best = i;
    return best;
}

void sq_silu_mul_task(void *job, int64_t task, int thread) {
    (void)thread;
    const sq_silu_mul_job *j = (const sq_silu_mul_job *)job;
    int64_t a = task * j->block, b = a + j->block < j->n ? a + j->block : j->n;
    if (a < b) sq_silu_mul_f32(j->g + a, j->u + a, j->out + a, b - a);
}
