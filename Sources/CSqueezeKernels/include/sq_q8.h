#ifndef SQ_Q8_H
#define SQ_Q8_H
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Block length of the 8-bit format: one F32 scale per 32 consecutive values of a row.
#define SQ_Q8_BLOCK 32

/// Quantizes rows [r0, r1) of W (F32, row stride ldw) to int8 blocks of 32: for each block,
/// d = max|w| / 127 and q = round(w / d) in [-127, 127]. Row r goes to q + r * kpad and its
/// kpad / 32 scales to d + r * (kpad / 32); columns k..kpad are zero. kpad is k rounded up to 32.
void sq_q8_quantize_rows(const float *w, int64_t ldw, int64_t k, int64_t kpad, int64_t r0, int64_t r1,
                         int8_t *q, float *d);

/// Quantizes one activation vector the same way (kpad / 32 blocks).
void sq_q8_quantize_x(const float *x, int64_t k, int64_t kpad, int8_t *q, float *d);

/// Y[t * ldy + r] = sum_b wd[r, b] * xd[t, b] * dot(wq[r, block b], xq[t, block b]) for rows
/// r in [r0, r1) and tokens t in [0, m). Token t's activations are at xq + t * kpad, xd + t * kpad / 32.
void sq_q8_gemm(const int8_t *wq, const float *wd, int64_t kpad, const int8_t *xq, const float *xd,
                int64_t m, float *y, int64_t ldy, int64_t r0, int64_t r1);

/// One sq_q8_gemm over rows [0, rows) cut into tasks of `block` rows for sq_pool_run (the job lives
/// on the caller's stack: dispatch allocates nothing).
typedef struct {
    const int8_t *wq;
    const float *wd;
    int64_t kpad;
    const int8_t *xq;
    const float *xd;
    int64_t m;
    float *y;
    int64_t ldy;
    int64_t rows;
    int64_t block;
} sq_q8_job;

/// Task function for sq_pool_run over a sq_q8_job.
void sq_q8_task(void *job, int64_t task, int thread);

/// Rows [r0, r1) of the quantized matrix back to F32 (k columns each) into out[(r - r0) * k ...].
void sq_q8_dequantize_rows(const int8_t *wq, const float *wd, int64_t kpad, int64_t k, int64_t r0, int64_t r1,
                           float *out);

/// Y[t * ldy + r] = sum_c X[t * ldx + c] * dequant(W)[r, c] for rows [r0, r1), by dequantizing blocks
/// of rows to F32 in a per-thread scratch and running the dense F32 GEMM tile (for many tokens).
void sq_q8_gemm_dequant(const int8_t *wq, const float *wd, int64_t kpad, int64_t k, const float *x,
                        int64_t ldx, int64_t m, float *y, int64_t ldy, int64_t r0, int64_t r1);

/// The variant sq_q8_gemm dispatches to now ("avx2", "i8mm", "dotprod", "neon" or "scalar"; i8mm is
/// used for two or more tokens).
const char *sq_q8_variant(void);

#ifdef __cplusplus
}
#endif
#endif
