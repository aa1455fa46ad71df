#ifndef SQ_BACKWARD_H
#define SQ_BACKWARD_H
#include <stdint.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/// What a backward GEMM does with its result C.
enum {
    /// out = C
    SQ_BW_STORE = 0,
    /// out += C
    SQ_BW_ADD = 1,
    /// out += C * C (elementwise; the Fisher accumulation)
    SQ_BW_ADD_SQUARE = 2,
};

/// General strided product C[i, j] = sum_{p < kdim} A(i, p) * B(p, j) for i in [0, m), j in [j0, j1),
/// where A(i, p) = a[i * sai + p * sap] and B(p, j) = b[p * ldb + j]; C is combined into
/// out[i * ldo + j] according to `mode` (SQ_BW_*). Sums run in F32 over p in order.
/// With sai = lda, sap = 1 this is dX = dY W (W [kdim, n] row-major: dX[t, c] = sum_r dY[t, r] W[r, c]);
/// with sai = 1, sap = lda it is dW = dY^T X (dW[r, c] = sum_t dY[t, r] X[t, c]).
/// AVX2+FMA micro-kernel (6 x 16 register tile), ARM64 NEON (4 x 16 register tile) or a scalar path;
/// dispatch on sq_isa().
/// SQ_BW_ADD_SQUARE never splits the reduction over p. Same as sq_gemm_general_f32 with sbp = ldb, sbj = 1.
void sq_gemm_strided_f32(const float *a, int64_t sai, int64_t sap, const float *b, int64_t ldb,
                         float *out, int64_t ldo, int64_t m, int64_t kdim, int64_t j0, int64_t j1, int mode);

/// The general product: as sq_gemm_strided_f32 with B(p, j) = b[p * sbp + j * sbj], so B may be
/// row-major (sbj = 1) or a row-major [n, kdim] matrix read transposed (sbp = 1, sbj = its row
/// stride; Y = X W^T). AVX2: A and B are packed (B in panels of 16 columns, A in tiles of 6 rows,
/// both zero-padded), a 6 x 16 register tile runs over them, blocked for L1/L2 (reduction blocks
/// of at most 320, except for SQ_BW_ADD_SQUARE, which keeps it whole). Uses per-thread buffers.
/// ARM64 NEON (sbj = 1 only): 4 x 16 register tiles over the unpacked operands, each sum over p in
/// order with fused multiply-adds.
void sq_gemm_general_f32(const float *a, int64_t sai, int64_t sap, const float *b, int64_t sbp, int64_t sbj,
                         float *out, int64_t ldo, int64_t m, int64_t kdim, int64_t j0, int64_t j1, int mode);

/// The scalar reference of sq_gemm_general_f32 (plain loops, F32 sums in order), for tests and benchmarks.
void sq_gemm_general_scalar_f32(const float *a, int64_t sai, int64_t sap, const float *b, int64_t sbp, int64_t sbj,
                                float *out, int64_t ldo, int64_t m, int64_t kdim, int64_t j0, int64_t j1, int mode);

/// out[i] += x[i] * x[i] for i in [0, n).
void sq_add_square_f32(const float *x, float *out, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
