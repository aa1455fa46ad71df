// Sparse products (y += S x) over row ranges, run as flat loops over the nonzeros in group order
// (see sq_sparse.h).
//
// Why flat loops: the sparse part of a SqueezeLLM layer has about 3 nonzeros per row, with counts
// that vary from row to row. A loop per row then mispredicts its exit branch on most rows; on Zen 3
// that cost about 4 ns per nonzero. Walking the nonzeros with their row index (y[row[p]] +=
// val[p] * x[col[p]]) has no data-dependent branch.
//
// Why group order: in row order the nonzeros of one row follow each other, and each sum waits for
// the previous one's store to y[row] (store-to-load forwarding plus the add, about 7 cycles). With
// the rows of a group interleaved, neighbours write different rows. Together with 16-bit indices and
// half-precision values (compact storage) this halved the time per nonzero in a harness that
// streams dense weights between the sparse products, as decoding does (about 1.6 to 0.8 ns).
//
// The product and the sum are separate statements on purpose: a fused multiply-add would put the
// multiplication's latency on the chain through y.
#include "sq_sparse.h"
#include "sq_dense.h"
#include <stdlib.h>
#if defined(__x86_64__)
#include <immintrin.h>
#define SQ_X86 1
#define T_AVX2 __attribute__((target("avx2,fma,f16c")))
#endif

#define G SQ_CSR_GROUP

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

void sq_csr_group_order(const int32_t *rowptr, int64_t rows, int32_t *order) {
    int64_t q = 0;
    for (int64_t g0 = 0; g0 < rows; g0 += G) {
        const int64_t g1 = g0 + G < rows ? g0 + G : rows;
        int32_t longest = 0;
        for (int64_t r = g0; r < g1; r++)
            if (rowptr[r + 1] - rowptr[r] > longest) longest = rowptr[r + 1] - rowptr[r];
        for (int32_t j = 0; j < longest; j++)
            for (int64_t r = g0; r < g1; r++)
                if (rowptr[r] + j < rowptr[r + 1]) order[q++] = rowptr[r] + j;
    }
}

// ---- one token, whole groups: y[row[p]] += val[p] * x[col[p]] ----

static void flat_wide(const int32_t *ri, const int32_t *ci, const float *v, const float *x, float *y, int64_t p0,
                      int64_t p1) {
    for (int64_t p = p0; p < p1; p++) {
        const float prod = v[p] * x[ci[p]];
        y[ri[p]] += prod;
    }
}

static void flat_compact_plain(const uint16_t *ri, const uint16_t *ci, const uint16_t *v, const float *x, float *y,
                               int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; p++) {
        const float prod = sq_f16_to_f32_1(v[p]) * x[ci[p]];
        y[ri[p]] += prod;
    }
}

#ifdef SQ_X86
// Values are converted eight at a time: a scalar conversion per value (vpinsrw + vcvtph2ps) merges
// into the previous iteration's register and made a loop-carried chain.
T_AVX2 static void flat_compact_avx2(const uint16_t *ri, const uint16_t *ci, const uint16_t *v, const float *x,
                                     float *y, int64_t p0, int64_t p1) {
    float t[8];
    int64_t p = p0;
    for (; p + 8 <= p1; p += 8) {
        _mm256_storeu_ps(t, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(v + p))));
        for (int k = 0; k < 8; k++) {
            const float prod = t[k] * x[ci[p + k]];
            y[ri[p + k]] += prod;
        }
    }
    for (; p < p1; p++) {
        const float prod = sq_f16_to_f32_1(v[p]) * x[ci[p]];
        y[ri[p]] += prod;
    }
}
#endif

// ---- several tokens, whole groups ----
// In blocks of TB tokens: the block's activations are transposed to xt[col * TB + t] and its sums
// gathered in yt[(row - r0) * TB + t], so that each nonzero is one multiply-add of TB contiguous floats.
// Scratch per thread, grown on demand.
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

static inline float wide_value(float v) { return v; }

#define DEF_SPMM_BLOCK(NAME, ATTR, IT, VT, CONV)                                                         \
    ATTR static void NAME(const IT *ri, const IT *ci, const VT *v, const float *xt, float *yt, int64_t r0,  \
                          int64_t p0, int64_t p1) {                                                         \
        for (int64_t p = p0; p < p1; p++) {                                                                 \
            float *yr = yt + ((int64_t)ri[p] - r0) * TB;                                                    \
            const float *xc = xt + (int64_t)ci[p] * TB;                                                     \
            const float val = CONV(v[p]);                                                                   \
            for (int t = 0; t < TB; t++) yr[t] += val * xc[t];                                              \
        }                                                                                                   \
    }
DEF_SPMM_BLOCK(block_wide_plain, , int32_t, float, wide_value)
DEF_SPMM_BLOCK(block_compact_plain, , uint16_t, uint16_t, sq_f16_to_f32_1)
#ifdef SQ_X86
DEF_SPMM_BLOCK(block_wide_avx2, T_AVX2, int32_t, float, wide_value)
DEF_SPMM_BLOCK(block_compact_avx2, T_AVX2, uint16_t, uint16_t, _cvtsh_ss)
#endif

static inline float value_at(const sq_csr *s, int64_t p) {
    return s->compact ? sq_f16_to_f32_1(((const uint16_t *)s->vals)[p]) : ((const float *)s->vals)[p];
}
static inline int64_t row_at(const sq_csr *s, int64_t p) {
    return s->compact ? ((const uint16_t *)s->rowidx)[p] : ((const int32_t *)s->rowidx)[p];
}
static inline int64_t col_at(const sq_csr *s, int64_t p) {
    return s->compact ? ((const uint16_t *)s->cols)[p] : ((const int32_t *)s->cols)[p];
}

// The nonzeros [p0, p1) of whole groups whose rows are [r0, r1).
static void span_whole(const sq_csr *s, const float *x, int64_t ldx, int64_t m, float *y, int64_t ldy, int64_t r0,
                       int64_t r1, int64_t p0, int64_t p1) {
    if (p1 <= p0) return;
#ifdef SQ_X86
    const int avx2 = sq_isa() >= SQ_ISA_AVX2;
#else
    const int avx2 = 0;
#endif
    if (m == 1) {
        if (!s->compact) flat_wide(s->rowidx, s->cols, s->vals, x, y, p0, p1);
#ifdef SQ_X86
        else if (avx2) flat_compact_avx2(s->rowidx, s->cols, s->vals, x, y, p0, p1);
#endif
        else flat_compact_plain(s->rowidx, s->cols, s->vals, x, y, p0, p1);
        return;
    }
    const int64_t nr = r1 - r0, columns = s->columns;
    float *xt = scratch((columns + nr) * TB);
    if (!xt) {  // no memory for the scratch: one token at a time
        for (int64_t t = 0; t < m; t++) span_whole(s, x + t * ldx, ldx, 1, y + t * ldy, ldy, r0, r1, p0, p1);
        return;
    }
    float *yt = xt + columns * TB;
    for (int64_t t0 = 0; t0 < m; t0 += TB) {
        const int nt = m - t0 < TB ? (int)(m - t0) : TB;
        for (int64_t c = 0; c < columns; c++) {
            float *d = xt + c * TB;
            int t = 0;
            for (; t < nt; t++) d[t] = x[(t0 + t) * ldx + c];
            for (; t < TB; t++) d[t] = 0;
        }
        for (int64_t i = 0; i < nr * TB; i++) yt[i] = 0;
        if (s->compact) {
#ifdef SQ_X86
            if (avx2) block_compact_avx2(s->rowidx, s->cols, s->vals, xt, yt, r0, p0, p1);
            else
#endif
                block_compact_plain(s->rowidx, s->cols, s->vals, xt, yt, r0, p0, p1);
        } else {
#ifdef SQ_X86
            if (avx2) block_wide_avx2(s->rowidx, s->cols, s->vals, xt, yt, r0, p0, p1);
            else
#endif
                block_wide_plain(s->rowidx, s->cols, s->vals, xt, yt, r0, p0, p1);
        }
        for (int t = 0; t < nt; t++) {
            float *yd = y + (t0 + t) * ldy;
            for (int64_t r = r0; r < r1; r++) yd[r] += yt[(r - r0) * TB + t];
        }
    }
}

// The group starting at row g0, cut to rows [lo, hi): every nonzero's row is checked.
static void group_cut(const sq_csr *s, const float *x, int64_t ldx, int64_t m, float *y, int64_t ldy, int64_t g0,
                      int64_t lo, int64_t hi) {
    const int64_t g1 = g0 + G < s->rows ? g0 + G : s->rows;
    for (int64_t p = s->rowptr[g0]; p < s->rowptr[g1]; p++) {
        const int64_t r = row_at(s, p);
        if (r < lo || r >= hi) continue;
        const float v = value_at(s, p);
        const int64_t c = col_at(s, p);
        for (int64_t t = 0; t < m; t++) {
            const float prod = v * x[t * ldx + c];  // as the flat loops: one token gives the same sums
            y[t * ldy + r] += prod;                 // wherever the thread ranges cut the groups
        }
    }
}

void sq_csr_spmm_range(const sq_csr *s, const float *x, int64_t ldx, int64_t m, float *y, int64_t ldy, int64_t r0,
                       int64_t r1) {
    if (r1 <= r0 || m <= 0 || s->rowptr[r1] <= s->rowptr[r0]) return;
    int64_t start = r0;
    if (r0 % G != 0) {  // the group that r0 cuts
        const int64_t g0 = r0 - r0 % G, g1 = g0 + G < s->rows ? g0 + G : s->rows;
        group_cut(s, x, ldx, m, y, ldy, g0, r0, r1 < g1 ? r1 : g1);
        if (r1 <= g1) return;
        start = g1;
    }
    const int64_t end = r1 == s->rows ? r1 : r1 - r1 % G;
    if (end > start) span_whole(s, x, ldx, m, y, ldy, start, end, s->rowptr[start], s->rowptr[end]);
    if (end < r1) group_cut(s, x, ldx, m, y, ldy, end, end, r1);  // the group that r1 cuts
}

void sq_csr_add_to_rows(const sq_csr *s, int64_t r0, int64_t r1, float *dst, int64_t ld) {
    if (r1 <= r0) return;
    const int64_t g1 = (r1 - 1) - (r1 - 1) % G + G;
    const int64_t p0 = s->rowptr[r0 - r0 % G], p1 = s->rowptr[g1 < s->rows ? g1 : s->rows];
    for (int64_t p = p0; p < p1; p++) {
        const int64_t r = row_at(s, p);
        if (r >= r0 && r < r1) dst[(r - r0) * ld + col_at(s, p)] += value_at(s, p);
    }
}
