// Sparse CSR products (y += S x) over row ranges, run as flat loops over the nonzeros (see sq_sparse.h).
//
// Why flat loops: the sparse part of a SqueezeLLM layer has about 3 nonzeros per row, with counts
// that vary from row to row. A loop per row then mispredicts its exit branch on most rows; on Zen 3
// that cost about 4 ns per nonzero. Walking the nonzeros with their row index (y[row[p]] +=
// val[p] * x[col[p]]) has no data-dependent branch and ran at about half that.
#include "sq_sparse.h"
#include "sq_dense.h"
#include <stdlib.h>
#if defined(__x86_64__)
#define SQ_X86 1
#define T_AVX2 __attribute__((target("avx2,fma")))
#endif

int64_t sq_csr_row_of(const int32_t *rowptr, int64_t rows, int64_t p) {
    // largest r with rowptr[r] <= p, then skip empty rows forward
    int64_t lo = 0, hi = rows; // invariant: rowptr[lo] <= p < rowptr[hi] (if p < nnz)
    while (hi - lo > 1) {
        int64_t mid = (lo + hi) / 2;
        if (rowptr[mid] <= p) lo = mid; else hi = mid;
    }
    while (lo < rows - 1 && rowptr[lo + 1] <= p) lo++;
    return lo;
}

void sq_csr_fill_row_index(const int32_t *rowptr, int64_t rows, int32_t *rowidx) {
    for (int64_t r = 0; r < rows; r++)
        for (int32_t p = rowptr[r]; p < rowptr[r + 1]; p++) rowidx[p] = (int32_t)r;
}

// One token: y[row[p]] += val[p] * x[col[p]].
static void spmv_flat(const int32_t *rowidx, const int32_t *cols, const float *vals, const float *x, float *y,
                      int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; p++) y[rowidx[p]] += vals[p] * x[cols[p]];
}

// Several tokens, in blocks of SQ_SPARSE_TB: the block's activations are transposed to
// xt[col * TB + t] and its sums gathered in yt[(row - r0) * TB + t], so that each nonzero is one
// multiply-add of TB contiguous floats. Scratch per thread, grown on demand.
#define TB 8
static _Thread_local float *t_scratch = NULL;
static _Thread_local int64_t t_cap = 0;

static float *scratch(int64_t floats) {
    if (t_cap >= floats) return t_scratch;
    free(t_scratch);
    t_scratch = NULL;
    t_cap = 0;
    if (posix_memalign((void **)&t_scratch, 64, (size_t)floats * sizeof(float)) != 0) return NULL;
    t_cap = floats;
    return t_scratch;
}

#define DEF_SPMM_BLOCK(NAME, ATTR)                                                                      \
    ATTR static void NAME(const int32_t *rowidx, const int32_t *cols, const float *vals, const float *xt, \
                          float *yt, int64_t r0, int64_t p0, int64_t p1) {                              \
        for (int64_t p = p0; p < p1; p++) {                                                             \
            float *yr = yt + (rowidx[p] - r0) * TB;                                                     \
            const float *xc = xt + (int64_t)cols[p] * TB;                                               \
            const float v = vals[p];                                                                    \
            for (int t = 0; t < TB; t++) yr[t] += v * xc[t];                                            \
        }                                                                                               \
    }
DEF_SPMM_BLOCK(spmm_block_plain, )
#ifdef SQ_X86
DEF_SPMM_BLOCK(spmm_block_avx2, T_AVX2)
#endif

void sq_csr_spmm_range(const int32_t *rowptr, const int32_t *rowidx, const int32_t *cols, const float *vals,
                       int64_t columns, const float *x, int64_t ldx, int64_t m, float *y, int64_t ldy, int64_t r0,
                       int64_t r1) {
    const int64_t p0 = rowptr[r0], p1 = rowptr[r1];
    if (p1 <= p0 || m <= 0) return;
    if (m == 1) { spmv_flat(rowidx, cols, vals, x, y, p0, p1); return; }
    const int64_t nr = r1 - r0;
    float *xt = scratch((columns + nr) * TB);
    if (!xt) {  // no memory for the scratch: one token at a time
        for (int64_t t = 0; t < m; t++) spmv_flat(rowidx, cols, vals, x + t * ldx, y + t * ldy, p0, p1);
        return;
    }
    float *yt = xt + columns * TB;
#ifdef SQ_X86
    const int avx2 = sq_isa() >= SQ_ISA_AVX2;
#endif
    for (int64_t t0 = 0; t0 < m; t0 += TB) {
        const int nt = m - t0 < TB ? (int)(m - t0) : TB;
        for (int64_t c = 0; c < columns; c++) {
            float *d = xt + c * TB;
            int t = 0;
            for (; t < nt; t++) d[t] = x[(t0 + t) * ldx + c];
            for (; t < TB; t++) d[t] = 0;
        }
        for (int64_t i = 0; i < nr * TB; i++) yt[i] = 0;
#ifdef SQ_X86
        if (avx2) spmm_block_avx2(rowidx, cols, vals, xt, yt, r0, p0, p1);
        else
#endif
            spmm_block_plain(rowidx, cols, vals, xt, yt, r0, p0, p1);
        for (int t = 0; t < nt; t++) {
            float *yd = y + (t0 + t) * ldy;
            for (int64_t r = r0; r < r1; r++) yd[r] += yt[(r - r0) * TB + t];
        }
    }
}
