// Activation kernels: softmax, SwiGLU, log-sum-exp, argmax, with a vectorised exp
// (Cephes-style: exp(x) = 2^n * p(r), r = x - n ln2, degree-6 polynomial, max rel. error ~2 ulp).
#include "sq_dense.h"
#include "sq_isa.h"
#include <math.h>
#include <float.h>

#ifdef SQ_X86
T_AVX512 static inline __m512 exp512(__m512 x) {
    const __m512 log2e = _mm512_set1_ps(1.44269504088896341f);
    const __m512 ln2hi = _mm512_set1_ps(0.693359375f), ln2lo = _mm512_set1_ps(-2.12194440e-4f);
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-103.0f)), _mm512_set1_ps(88.72f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, ln2hi, x);
    r = _mm512_fnmadd_ps(n, ln2lo, r);
    __m512 p = _mm512_set1_ps(1.9875691500E-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507E-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073E-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894E-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459E-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201E-1f));
    __m512 r2 = _mm512_mul_ps(r, r);
    p = _mm512_fmadd_ps(p, r2, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

T_AVX512 static float softmax_avx512(float *x, int64_t n, float scale) {
    __m512 vmax = _mm512_set1_ps(-INFINITY);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) vmax = _mm512_max_ps(vmax, _mm512_loadu_ps(x + i));
    float mx = _mm512_reduce_max_ps(vmax);
    for (int64_t j = i; j < n; j++) mx = x[j] > mx ? x[j] : mx;
    if (mx == -INFINITY) return -INFINITY;
    __m512 vm = _mm512_set1_ps(mx), vs = _mm512_setzero_ps();
    for (i = 0; i + 16 <= n; i += 16) {
        __m512 e = exp512(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm));
        _mm512_storeu_ps(x + i, e);
        vs = _mm512_add_ps(vs, e);
    }
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m512 e = exp512(_mm512_sub_ps(_mm512_mask_loadu_ps(vm, m, x + i), vm));
        e = _mm512_maskz_mov_ps(m, e);
        _mm512_mask_storeu_ps(x + i, m, e);
        vs = _mm512_add_ps(vs, e);
    }
    float s = _mm512_reduce_add_ps(vs);
    __m512 inv = _mm512_set1_ps(scale / s);
    for (i = 0; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), inv));
    for (; i < n; i++) x[i] *= scale / s;
    return logf(s) + mx;
}

T_AVX512 static float lse_avx512(const float *x, int64_t n) {
    __m512 vmax = _mm512_set1_ps(-INFINITY);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) vmax = _mm512_max_ps(vmax, _mm512_loadu_ps(x + i));
    float mx = _mm512_reduce_max_ps(vmax);
    for (int64_t j = i; j < n; j++) mx = x[j] > mx ? x[j] : mx;
    if (mx == -INFINITY) return -INFINITY;
    __m512 vm = _mm512_set1_ps(mx), vs = _mm512_setzero_ps();
    for (i = 0; i + 16 <= n; i += 16) vs = _mm512_add_ps(vs, exp512(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm)));
    float s = _mm512_reduce_add_ps(vs);
    for (; i < n; i++) s += expf(x[i] - mx);
    return logf(s) + mx;
}

T_AVX512 static void silu_mul_avx512(const float *g, const float *u, float *out, int64_t n) {
    int64_t i = 0;
    const __m512 one = _mm512_set1_ps(1.0f);
    for (; i + 16 <= n; i += 16) {
        __m512 gv = _mm512_loadu_ps(g + i);
        __m512 e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), gv));
        __m512 s = _mm512_div_ps(gv, _mm512_add_ps(one, e));
        _mm512_storeu_ps(out + i, _mm512_mul_ps(s, _mm512_loadu_ps(u + i)));
    }
    for (; i < n; i++) out[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

T_AVX2 static inline __m256 exp256(__m256 x) {
    const __m256 log2e = _mm256_set1_ps(1.44269504088896341f);
    const __m256 ln2hi = _mm256_set1_ps(0.693359375f), ln2lo = _mm256_set1_ps(-2.12194440e-4f);
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.72f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, ln2hi, x);
    r = _mm256_fnmadd_ps(n, ln2lo, r);
    __m256 p = _mm256_set1_ps(1.9875691500E-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507E-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073E-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894E-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459E-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201E-1f));
    __m256 r2 = _mm256_mul_ps(r, r);
    p = _mm256_fmadd_ps(p, r2, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    // 2^n via the exponent field (n in [-126, 128) after the clamp; n = 128 handled by splitting).
    __m256i ni = _mm256_cvtps_epi32(n);
    __m256i half = _mm256_srai_epi32(ni, 1);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(half, _mm256_set1_epi32(127)), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(ni, half), _mm256_set1_epi32(127)), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

T_AVX2 static inline float hmax256(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

T_AVX2 static float softmax_avx2(float *x, int64_t n, float scale) {
    __m256 vmax = _mm256_set1_ps(-INFINITY);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(x + i));
    float mx = hmax256(vmax);
    for (int64_t j = i; j < n; j++) mx = x[j] > mx ? x[j] : mx;
    if (mx == -INFINITY) return -INFINITY;
    __m256 vm = _mm256_set1_ps(mx), vs = _mm256_setzero_ps();
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
        _mm256_storeu_ps(x + i, e);
        vs = _mm256_add_ps(vs, e);
    }
    float s = sq_hsum8(vs);
    for (; i < n; i++) { x[i] = expf(x[i] - mx); s += x[i]; }
    __m256 inv = _mm256_set1_ps(scale / s);
    for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), inv));
    for (; i < n; i++) x[i] *= scale / s;
    return logf(s) + mx;
}

T_AVX2 static float lse_avx2(const float *x, int64_t n) {
    __m256 vmax = _mm256_set1_ps(-INFINITY);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(x + i));
    float mx = hmax256(vmax);
    for (int64_t j = i; j < n; j++) mx = x[j] > mx ? x[j] : mx;
    if (mx == -INFINITY) return -INFINITY;
    __m256 vm = _mm256_set1_ps(mx), vs = _mm256_setzero_ps();
    for (i = 0; i + 8 <= n; i += 8) vs = _mm256_add_ps(vs, exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm)));
    float s = sq_hsum8(vs);
    for (; i < n; i++) s += expf(x[i] - mx);
    return logf(s) + mx;
}

T_AVX2 static void silu_mul_avx2(const float *g, const float *u, float *out, int64_t n) {
    int64_t i = 0;
    const __m256 one = _mm256_set1_ps(1.0f);
    for (; i + 8 <= n; i += 8) {
        __m256 gv = _mm256_loadu_ps(g + i);
        __m256 e = exp256(_mm256_sub_ps(_mm256_setzero_ps(), gv));
        __m256 s = _mm256_div_ps(gv, _mm256_add_ps(one, e));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(s, _mm256_loadu_ps(u + i)));
    }
    for (; i < n; i++) out[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

T_AVX2 static void silu_mul_backward_avx2(const float *g, const float *u, float *dg, float *du, int64_t n) {
    int64_t i = 0;
    const __m256 one = _mm256_set1_ps(1.0f);
    for (; i + 8 <= n; i += 8) {
        __m256 gv = _mm256_loadu_ps(g + i), da = _mm256_loadu_ps(dg + i);
        __m256 s = _mm256_div_ps(one, _mm256_add_ps(one, exp256(_mm256_sub_ps(_mm256_setzero_ps(), gv))));
        __m256 das = _mm256_mul_ps(da, s);
        _mm256_storeu_ps(du + i, _mm256_mul_ps(das, gv));
        // dg = da s u (1 + g (1 - s))
        __m256 f = _mm256_fmadd_ps(gv, _mm256_sub_ps(one, s), one);
        _mm256_storeu_ps(dg + i, _mm256_mul_ps(_mm256_mul_ps(das, _mm256_loadu_ps(u + i)), f));
    }
    for (; i < n; i++) {
        float gi = g[i], s = 1.0f / (1.0f + expf(-gi)), da = dg[i];
        du[i] = da * gi * s;
        dg[i] = da * u[i] * s * (1.0f + gi * (1.0f - s));
    }
}
#endif

#ifdef SQ_ARM
// exp256's polynomial and range reduction on four lanes.
static inline float32x4_t exp_neon(float32x4_t x) {
    x = vminq_f32(vmaxq_f32(x, vdupq_n_f32(-87.3f)), vdupq_n_f32(88.72f));
    float32x4_t n = vrndnq_f32(vmulq_n_f32(x, 1.44269504088896341f));
    float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693359375f));
    r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));
    float32x4_t p = vdupq_n_f32(1.9875691500E-4f);
    p = vfmaq_f32(vdupq_n_f32(1.3981999507E-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(8.3334519073E-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(4.1665795894E-2f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.6666665459E-1f), p, r);
    p = vfmaq_f32(vdupq_n_f32(5.0000001201E-1f), p, r);
    p = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0f)), p, vmulq_f32(r, r));
    // 2^n in two factors through the exponent field (n = 128 after the clamp needs the split)
    int32x4_t ni = vcvtnq_s32_f32(n), half = vshrq_n_s32(ni, 1);
    float32x4_t s1 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(half, vdupq_n_s32(127)), 23));
    float32x4_t s2 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(vsubq_s32(ni, half), vdupq_n_s32(127)), 23));
    return vmulq_f32(vmulq_f32(p, s1), s2);
}

static float softmax_neon(float *x, int64_t n, float scale) {
    float32x4_t vmax = vdupq_n_f32(-INFINITY);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vmax = vmaxq_f32(vmax, vld1q_f32(x + i));
    float mx = vmaxvq_f32(vmax);
    for (int64_t j = i; j < n; j++) mx = x[j] > mx ? x[j] : mx;
    if (mx == -INFINITY) return -INFINITY;
    float32x4_t vm = vdupq_n_f32(mx), vs = vdupq_n_f32(0);
    for (i = 0; i + 4 <= n; i += 4) {
        float32x4_t e = exp_neon(vsubq_f32(vld1q_f32(x + i), vm));
        vst1q_f32(x + i, e);
        vs = vaddq_f32(vs, e);
    }
    float s = sq_hsum4(vs);
    for (; i < n; i++) { x[i] = expf(x[i] - mx); s += x[i]; }
    const float inv = scale / s;
    for (i = 0; i + 4 <= n; i += 4) vst1q_f32(x + i, vmulq_n_f32(vld1q_f32(x + i), inv));
    for (; i < n; i++) x[i] *= scale / s;
    return logf(s) + mx;
}

static float lse_neon(const float *x, int64_t n) {
    float32x4_t vmax = vdupq_n_f32(-INFINITY);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vmax = vmaxq_f32(vmax, vld1q_f32(x + i));
    float mx = vmaxvq_f32(vmax);
    for (int64_t j = i; j < n; j++) mx = x[j] > mx ? x[j] : mx;
    if (mx == -INFINITY) return -INFINITY;
    float32x4_t vm = vdupq_n_f32(mx), vs = vdupq_n_f32(0);
    for (i = 0; i + 4 <= n; i += 4) vs = vaddq_f32(vs, exp_neon(vsubq_f32(vld1q_f32(x + i), vm)));
    float s = sq_hsum4(vs);
    for (; i < n; i++) s += expf(x[i] - mx);
    return logf(s) + mx;
}

static void silu_mul_neon(const float *g, const float *u, float *out, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t gv = vld1q_f32(g + i);
        float32x4_t sv = vdivq_f32(gv, vaddq_f32(vdupq_n_f32(1.0f), exp_neon(vnegq_f32(gv))));
        vst1q_f32(out + i, vmulq_f32(sv, vld1q_f32(u + i)));
    }
    for (; i < n; i++) out[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

static void silu_mul_backward_neon(const float *g, const float *u, float *dg, float *du, int64_t n) {
    int64_t i = 0;
    const float32x4_t one = vdupq_n_f32(1.0f);
    for (; i + 4 <= n; i += 4) {
        float32x4_t gv = vld1q_f32(g + i), da = vld1q_f32(dg + i);
        float32x4_t sv = vdivq_f32(one, vaddq_f32(one, exp_neon(vnegq_f32(gv))));
        float32x4_t das = vmulq_f32(da, sv);
        vst1q_f32(du + i, vmulq_f32(das, gv));
        // dg = da s u (1 + g (1 - s))
        float32x4_t f = vfmaq_f32(one, gv, vsubq_f32(one, sv));
        vst1q_f32(dg + i, vmulq_f32(vmulq_f32(das, vld1q_f32(u + i)), f));
    }
    for (; i < n; i++) {
        float gi = g[i], sg = 1.0f / (1.0f + expf(-gi)), d = dg[i];
        du[i] = d * gi * sg;
        dg[i] = d * u[i] * sg * (1.0f + gi * (1.0f - sg));
    }
}
#endif

void sq_silu_mul_backward_f32(const float *g, const float *u, float *dg, float *du, int64_t n) {
#ifdef SQ_X86
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
