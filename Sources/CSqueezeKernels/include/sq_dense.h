#ifndef SQ_DENSE_H
#define SQ_DENSE_H
#include <stdint.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/// CPU feature bits reported by sq_cpu_features().
enum {
    SQ_CPU_AVX2 = 1 << 0,
    SQ_CPU_FMA = 1 << 1,
    SQ_CPU_F16C = 1 << 2,
    SQ_CPU_AVX512F = 1 << 3,
    SQ_CPU_AVX512BW = 1 << 4,
    SQ_CPU_AVX512VL = 1 << 5,
    SQ_CPU_AVX512VBMI = 1 << 6,
    SQ_CPU_AVX512VNNI = 1 << 7,
    SQ_CPU_AVX512BF16 = 1 << 8,
    SQ_CPU_AVXVNNI = 1 << 9,
    SQ_CPU_NEON = 1 << 16,    ///< ARM64 Advanced SIMD (always present on ARM64)
    SQ_CPU_DOTPROD = 1 << 17, ///< ARM64 SDOT/UDOT (FEAT_DotProd, "asimddp")
    SQ_CPU_I8MM = 1 << 18,    ///< ARM64 SMMLA/UMMLA (FEAT_I8MM)
    SQ_CPU_FP16 = 1 << 19,    ///< ARM64 half-precision arithmetic (FEAT_FP16, "asimdhp")
};

/// Instruction-set levels the dispatcher chooses between: x86-64 (AVX2, AVX-512) or ARM64 (NEON,
/// NEON with the dot-product extension, NEON with dot product and int8 matrix multiply). Each CPU
/// supports scalar plus the levels of its own architecture, ordered.
enum {
    SQ_ISA_SCALAR = 0,
    SQ_ISA_AVX2 = 1,
    SQ_ISA_AVX512 = 2,
    SQ_ISA_NEON = 3,
    SQ_ISA_DOTPROD = 4,
    SQ_ISA_I8MM = 5
};

/// Features of this CPU (detected once).
uint32_t sq_cpu_features(void);
/// The highest ISA level the CPU supports.
int sq_isa_supported(void);
/// The ISA level kernels dispatch to (the supported level unless lowered by sq_set_isa).
int sq_isa(void);
/// Lowers (or restores) the dispatch level; clamped to what the CPU supports. Returns the level set.
int sq_set_isa(int level);

// ---- conversions (n elements) ----
void sq_f16_to_f32(const uint16_t *src, float *dst, int64_t n);
void sq_f32_to_f16(const float *src, uint16_t *dst, int64_t n);
void sq_bf16_to_f32(const uint16_t *src, float *dst, int64_t n);
void sq_f32_to_bf16(const float *src, uint16_t *dst, int64_t n);
float sq_f16_to_f32_1(uint16_t h);
uint16_t sq_f32_to_f16_1(float f);

// ---- vector helpers ----
float sq_dot_f32(const float *a, const float *b, int64_t n);
/// Sum of n floats (p 32-byte aligned for the SIMD path), reading four streams at once: the
/// memory-bandwidth probe.
float sq_read_sum_f32(const float *p, int64_t n);
/// y += a * x
void sq_axpy_f32(float a, const float *x, float *y, int64_t n);

// ---- GEMV: y[r - r0] = dot(W[r, :k], x) for r in [r0, r1); W row-major with row stride ldw elements ----
void sq_gemv_f32(const float *w, int64_t ldw, const float *x, float *y, int64_t k, int64_t r0, int64_t r1);
void sq_gemv_f16(const uint16_t *w, int64_t ldw, const float *x, float *y, int64_t k, int64_t r0, int64_t r1);
void sq_gemv_bf16(const uint16_t *w, int64_t ldw, const float *x, float *y, int64_t k, int64_t r0, int64_t r1);
/// One dense GEMV (dtype 0 = F32, 1 = F16, 2 = BF16; row stride k) over rows [0, rows) cut into tasks of
/// `block` rows for sq_pool_run; task rows [r0, r1) go to y + r0 as sq_gemv_* writes them. The job
/// lives on the caller's stack: dispatch allocates nothing.
typedef struct {
    int dtype;
    const void *w;
    int64_t k;
    const float *x;
    float *y;
    int64_t rows;
    int64_t block;
} sq_gemv_job;
/// Task function for sq_pool_run over a sq_gemv_job.
void sq_gemv_task(void *job, int64_t task, int thread);

// ---- GEMM: Y[m, n] = dot(X[m, :k], W[n, :k]) for m in [0, M), n in [n0, n1).
// X row stride ldx, W row stride ldw, Y row stride ldy (Y[m*ldy + n], n absolute). ----
void sq_gemm_f32(const float *x, int64_t ldx, const float *w, int64_t ldw, float *y, int64_t ldy,
                 int64_t m, int64_t k, int64_t n0, int64_t n1);
void sq_gemm_f16(const float *x, int64_t ldx, const uint16_t *w, int64_t ldw, float *y, int64_t ldy,
                 int64_t m, int64_t k, int64_t n0, int64_t n1);
void sq_gemm_bf16(const float *x, int64_t ldx, const uint16_t *w, int64_t ldw, float *y, int64_t ldy,
                  int64_t m, int64_t k, int64_t n0, int64_t n1);

#ifdef __cplusplus
}
#endif
#endif

#ifdef __cplusplus
extern "C" {
#endif
// ---- activation helpers ----
/// x[i] = exp(x[i] - max) / sum, in place; returns the log of the sum plus max (log-sum-exp).
float sq_softmax_f32(float *x, int64_t n);
/// x[i] = scale * exp(x[i] - max) / sum, in place, in the passes of sq_softmax_f32; returns the
/// log-sum-exp of the input (as sq_softmax_f32).
float sq_softmax_scaled_f32(float *x, int64_t n, float scale);
/// out[i] = g[i] * sigmoid(g[i]) * u[i] (SwiGLU).
void sq_silu_mul_f32(const float *g, const float *u, float *out, int64_t n);
/// sq_silu_mul_f32 over [0, n) cut into tasks of `block` elements for sq_pool_run (the job lives on
/// the caller's stack: dispatch allocates nothing).
typedef struct {
    const float *g;
    const float *u;
    float *out;
    int64_t n;
    int64_t block;
} sq_silu_mul_job;
/// Task function for sq_pool_run over a sq_silu_mul_job.
void sq_silu_mul_task(void *job, int64_t task, int thread);
/// The backward of sq_silu_mul_f32: with dg holding da = dL/d(out) on entry, writes
/// du[i] = da * silu(g[i]) and dg[i] = da * u[i] * s * (1 + g[i] (1 - s)), s = sigmoid(g[i]).
void sq_silu_mul_backward_f32(const float *g, const float *u, float *dg, float *du, int64_t n);
/// Returns log(sum(exp(x))) computed stably.
float sq_logsumexp_f32(const float *x, int64_t n);
/// Index of the largest element (first on ties).
int64_t sq_argmax_f32(const float *x, int64_t n);
#ifdef __cplusplus
}
#endif
