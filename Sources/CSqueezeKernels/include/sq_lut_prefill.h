#ifndef SQ_LUT_PREFILL_H
#define SQ_LUT_PREFILL_H
#include <stdint.h>
#include "sq_sparse.h"

#ifdef __cplusplus
extern "C" {
#endif
/// Prefill path for many tokens: rows [r0, r1) of a packed LUT matrix are decoded to F32 in blocks
/// of 128 rows (into a per-thread scratch), the sparse part's values of those rows added in (when
/// `sparse` is not NULL), and multiplied by the dense GEMM kernel, so each decoded row serves all m
/// tokens. y[t * ldy + r] = sum_{i < cols} (W + S)[r, i] x[t * ldx + i].
void sq_lut_gemm_dequant(int bits, const uint8_t *w, const float *lut, const sq_csr *sparse, int64_t kpad,
                         int64_t cols, const float *x, int64_t ldx, int64_t m, float *y, int64_t ldy, int64_t r0,
                         int64_t r1);
#ifdef __cplusplus
}
#endif
#endif
