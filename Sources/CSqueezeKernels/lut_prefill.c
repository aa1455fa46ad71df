// Prefill for look-up-table matrices: decode a block of rows once (with the sparse part added in),
// reuse it for every token.
#include "sq_lut_prefill.h"
#include "sq_lut.h"
#include "sq_dense.h"
#include <stdlib.h>

#define ROW_BLOCK 128  // rows dequantized at once: the packed GEMM (32+ tokens) re-packs X for each block

static _Thread_local float *t_rows = NULL;
static _Thread_local int64_t t_cap = 0;

static int ensure(int64_t kpad) {
    if (t_cap >= kpad) return 1;
    free(t_rows);
    t_rows = NULL; t_cap = 0;
    if (posix_memalign((void **)&t_rows, 64, (size_t)(ROW_BLOCK * kpad) * sizeof(float)) != 0) return 0;
    t_cap = kpad;
    return 1;
}

void sq_lut_gemm_dequant(int bits, const uint8_t *w, const float *lut, const sq_csr *sparse, int64_t kpad,
                         int64_t cols, const float *x, int64_t ldx, int64_t m, float *y, int64_t ldy, int64_t r0,
                         int64_t r1) {
    if (!ensure(kpad)) {
        sq_lut_gemm_f32(bits, w, lut, x, ldx, m, y, ldy, kpad, r0, r1);
        if (sparse) sq_csr_spmm_range(sparse, x, ldx, m, y, ldy, r0, r1);
        return;
    }
    for (int64_t rb = r0; rb < r1; rb += ROW_BLOCK) {
        int64_t nr = r1 - rb < ROW_BLOCK ? r1 - rb : ROW_BLOCK;
        for (int64_t j = 0; j < nr; j++) sq_lut_dequantize_row(bits, w, lut, kpad, rb + j, t_rows + j * kpad);
        if (sparse) sq_csr_add_to_rows(sparse, rb, rb + nr, t_rows, kpad);
        sq_gemm_f32(x, ldx, t_rows, kpad, y + rb, ldy, m, cols, 0, nr);
    }
}
