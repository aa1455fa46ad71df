// Sparse products (y += S x) in sliced ELL form with rows sorted inside windows (see sq_sparse.h).
// Slices of 8 lanes sum 8 nonzeros per multiply-add and write y once per chunk; columns are loaded one
// by one, not gathered (gathers are slow on AMD Zen). Why and figures: docs/sparse-layout.md.
#include "sq_sparse.h"
#include "sq_dense.h"
#include "sq_isa.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define L SQ_SELL_LANES

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

int64_t sq_sell_window(int64_t rows) {
    const int64_t half = (rows + 1) / 2;
    for (int64_t w = SQ_SELL_MAX_WINDOW; w >= 64; w -= L)
        if (half % w == 0) return w;
    return 128;
}

// ---- layout ----

// A run of at most SQ_SELL_CHUNK consecutive nonzeros of one row: the unit dealt into lanes.
typedef struct { int32_t count, row, start; } chunk;

static int by_count_desc(const void *a, const void *b) {
    const chunk *x = a, *y = b;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    if (x->row != y->row) return x->row < y->row ? -1 : 1;
    return x->start < y->start ? -1 : (x->start > y->start);
}

// The chunks of window [w0, w1), sorted (a row's chunks stay in order: full ones by start, then the
// shorter last one); returns how many, or -1 when out of memory. *buf grows as needed.
static int64_t sorted_chunks(const int32_t *rowptr, int64_t w0, int64_t w1, chunk **buf, int64_t *cap) {
    int64_t n = 0;
    for (int64_t r = w0; r < w1; r++) n += (rowptr[r + 1] - rowptr[r] + SQ_SELL_CHUNK - 1) / SQ_SELL_CHUNK;
    if (n > *cap) {
        chunk *grown = realloc(*buf, (size_t)n * sizeof(chunk));
        if (!grown) return -1;
        *buf = grown;
        *cap = n;
    }
    chunk *out = *buf;
    n = 0;
    for (int64_t r = w0; r < w1; r++) {
        const int32_t c = rowptr[r + 1] - rowptr[r];
        for (int32_t j = 0; j < c; j += SQ_SELL_CHUNK)
            out[n++] = (chunk){c - j < SQ_SELL_CHUNK ? c - j : SQ_SELL_CHUNK, (int32_t)r, j};
    }
    qsort(out, (size_t)n, sizeof(chunk), by_count_desc);
    return n;
}

int sq_sell_plan(const int32_t *rowptr, int64_t rows, int64_t window, int64_t *slices, int64_t *levels) {
    chunk *buf = NULL;
    int64_t cap = 0, ns = 0, nl = 0;
    for (int64_t w0 = 0; w0 < rows; w0 += window) {
        const int64_t n = sorted_chunks(rowptr, w0, w0 + window < rows ? w0 + window : rows, &buf, &cap);
        if (n < 0) { free(buf); return 0; }
        for (int64_t i = 0; i < n; i += L) { ns++; nl += buf[i].count; }
    }
    free(buf);
    *slices = ns;
    *levels = nl;
    return 1;
}

int sq_sell_build(const int32_t *rowptr, int64_t rows, int64_t window, int32_t *window_slices,
                  int32_t *slice_levels, uint16_t *lane_rows, uint8_t *lane_counts, int32_t *source) {
    chunk *buf = NULL;
    int64_t cap = 0, ns = 0, nl = 0, w = 0;
    for (int64_t w0 = 0; w0 < rows; w0 += window, w++) {
        window_slices[w] = (int32_t)ns;
        const int64_t n = sorted_chunks(rowptr, w0, w0 + window < rows ? w0 + window : rows, &buf, &cap);
        if (n < 0) { free(buf); return 0; }
        for (int64_t i = 0; i < n; i += L, ns++) {
            const int32_t depth = buf[i].count;  // the slice's longest chunk (sorted: its first)
            slice_levels[ns] = (int32_t)nl;
            for (int l = 0; l < L; l++) {
                const chunk *c = i + l < n ? buf + i + l : NULL;
                lane_rows[ns * L + l] = c ? (uint16_t)(c->row - w0) : SQ_SELL_EMPTY;
                lane_counts[ns * L + l] = c ? (uint8_t)c->count : 0;
                for (int32_t j = 0; j < depth; j++)
                    source[(nl + j) * L + l] = c && j < c->count ? rowptr[c->row] + c->start + j : -1;
            }
            nl += depth;
        }
    }
    free(buf);
    window_slices[w] = (int32_t)ns;
    slice_levels[ns] = (int32_t)nl;
    return 1;
}

// ---- one slice: acc[l] = sum_j vals[j, l] * x[cols[j, l]], in order j = 0, 1, ... ----

static inline void slice_plain(const sq_csr *s, int64_t j0, int64_t j1, const float *x, float *acc) {
    for (int l = 0; l < L; l++) acc[l] = 0;
    for (int64_t j = j0; j < j1; j++) {
        for (int l = 0; l < L; l++) {
            const int64_t q = j * L + l;
            const int64_t c = s->compact ? ((const uint16_t *)s->cols)[q] : ((const int32_t *)s->cols)[q];
            const float v = s->compact ? sq_f16_to_f32_1(((const uint16_t *)s->vals)[q]) : ((const float *)s->vals)[q];
            acc[l] = fmaf(v, x[c], acc[l]);
        }
    }
}

#ifdef SQ_X86
T_AVX2 static inline __m128 load4(const float *x, int64_t a, int64_t b, int64_t c, int64_t d) {
    __m128 v = _mm_load_ss(x + a);
    v = _mm_insert_ps(v, _mm_load_ss(x + b), 0x10);
    v = _mm_insert_ps(v, _mm_load_ss(x + c), 0x20);
    return _mm_insert_ps(v, _mm_load_ss(x + d), 0x30);
}

T_AVX2 static inline void slice_compact_avx2(const sq_csr *s, int64_t j0, int64_t j1, const float *x, float *acc) {
    const uint16_t *cols = (const uint16_t *)s->cols, *vals = (const uint16_t *)s->vals;
    __m256 a = _mm256_setzero_ps();
    for (int64_t j = j0; j < j1; j++) {
        uint64_t lo, hi;
        memcpy(&lo, cols + j * L, 8);
        memcpy(&hi, cols + j * L + 4, 8);
        const __m128 x0 = load4(x, lo & 0xFFFF, (lo >> 16) & 0xFFFF, (lo >> 32) & 0xFFFF, lo >> 48);
        const __m128 x1 = load4(x, hi & 0xFFFF, (hi >> 16) & 0xFFFF, (hi >> 32) & 0xFFFF, hi >> 48);
        const __m256 xv = _mm256_insertf128_ps(_mm256_castps128_ps256(x0), x1, 1);
        const __m256 v = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(vals + j * L)));
        a = _mm256_fmadd_ps(v, xv, a);
    }
    _mm256_storeu_ps(acc, a);
}

T_AVX2 static inline void slice_wide_avx2(const sq_csr *s, int64_t j0, int64_t j1, const float *x, float *acc) {
    const int32_t *cols = (const int32_t *)s->cols;
    const float *vals = (const float *)s->vals;
    __m256 a = _mm256_setzero_ps();
    for (int64_t j = j0; j < j1; j++) {
        const int32_t *c = cols + j * L;
        const __m128 x0 = load4(x, c[0], c[1], c[2], c[3]);
        const __m128 x1 = load4(x, c[4], c[5], c[6], c[7]);
        const __m256 xv = _mm256_insertf128_ps(_mm256_castps128_ps256(x0), x1, 1);
        a = _mm256_fmadd_ps(_mm256_loadu_ps(vals + j * L), xv, a);
    }
    _mm256_storeu_ps(acc, a);
}
#endif

#ifdef SQ_ARM
// Four columns of x into the lanes of one vector, one load each.
static inline float32x4_t load4_neon(const float *x, int64_t a, int64_t b, int64_t c, int64_t d) {
    float32x4_t v = vld1q_dup_f32(x + a);
    v = vld1q_lane_f32(x + b, v, 1);
    v = vld1q_lane_f32(x + c, v, 2);
    return vld1q_lane_f32(x + d, v, 3);
}
static inline void slice_compact_neon(const sq_csr *s, int64_t j0, int64_t j1, const float *x, float *acc) {
    const uint16_t *cols = (const uint16_t *)s->cols, *vals = (const uint16_t *)s->vals;
    float32x4_t a0 = vdupq_n_f32(0), a1 = vdupq_n_f32(0);
    for (int64_t j = j0; j < j1; j++) {
        const uint16_t *c = cols + j * L;
        const float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(vals + j * L));
        a0 = vfmaq_f32(a0, vcvt_f32_f16(vget_low_f16(h)), load4_neon(x, c[0], c[1], c[2], c[3]));
        a1 = vfmaq_f32(a1, vcvt_high_f32_f16(h), load4_neon(x, c[4], c[5], c[6], c[7]));
    }
    vst1q_f32(acc, a0);
    vst1q_f32(acc + 4, a1);
}
static inline void slice_wide_neon(const sq_csr *s, int64_t j0, int64_t j1, const float *x, float *acc) {
    const int32_t *cols = (const int32_t *)s->cols;
    const float *vals = (const float *)s->vals;
    float32x4_t a0 = vdupq_n_f32(0), a1 = vdupq_n_f32(0);
    for (int64_t j = j0; j < j1; j++) {
        const int32_t *c = cols + j * L;
        a0 = vfmaq_f32(a0, vld1q_f32(vals + j * L), load4_neon(x, c[0], c[1], c[2], c[3]));
        a1 = vfmaq_f32(a1, vld1q_f32(vals + j * L + 4), load4_neon(x, c[4], c[5], c[6], c[7]));
    }
    vst1q_f32(acc, a0);
    vst1q_f32(acc + 4, a1);
}
#endif

// One token over windows [r0 / W, ceil(r1 / W)) for rows [r0, r1), with SLICE inlined (one body per
// variant). Several tokens run one after another (the slices stay in cache), so a token's sums never
// depend on the others.
#define SPMV_NAME spmv_plain
#define SPMV_ATTR
#define SPMV_SLICE slice_plain
#include "sparse_spmv.h"
#ifdef SQ_X86
#define SPMV_NAME spmv_compact_avx2
#define SPMV_ATTR T_AVX2
#define SPMV_SLICE slice_compact_avx2
#include "sparse_spmv.h"
#define SPMV_NAME spmv_wide_avx2
#define SPMV_ATTR T_AVX2
#define SPMV_SLICE slice_wide_avx2
#include "sparse_spmv.h"
#endif
#ifdef SQ_ARM
#define SPMV_NAME spmv_compact_neon
#define SPMV_ATTR T_NEON
#define SPMV_SLICE slice_compact_neon
#include "sparse_spmv.h"
#define SPMV_NAME spmv_wide_neon
#define SPMV_ATTR T_NEON
#define SPMV_SLICE slice_wide_neon
#include "sparse_spmv.h"
#endif

void sq_csr_spmm_range(const sq_csr *s, const float *x, int64_t ldx, int64_t m, float *y, int64_t ldy, int64_t r0,
                       int64_t r1) {
    if (r1 <= r0 || m <= 0 || s->rowptr[r1] <= s->rowptr[r0]) return;
    void (*fn)(const sq_csr *, const float *, float *, int64_t, int64_t) = spmv_plain;
#ifdef SQ_X86
    if (sq_isa() >= SQ_ISA_AVX2) fn = s->compact ? spmv_compact_avx2 : spmv_wide_avx2;
#endif
#ifdef SQ_ARM
    if (sq_isa() >= SQ_ISA_NEON) fn = s->compact ? spmv_compact_neon : spmv_wide_neon;
#endif
    for (int64_t t = 0; t < m; t++) fn(s, x + t * ldx, y + t * ldy, r0, r1);
}

void sq_csr_add_to_rows(const sq_csr *s, int64_t r0, int64_t r1, float *dst, int64_t ld) {
    if (r1 <= r0) return;
    const int64_t W = s->window, wa = r0 / W, wb = (r1 + W - 1) / W;
    for (int64_t w = wa; w < wb; w++) {
        const int64_t base = w * W;
        for (int64_t sl = s->window_slices[w]; sl < s->window_slices[w + 1]; sl++) {
            const int64_t j0 = s->slice_levels[sl];
            for (int l = 0; l < L; l++) {
                const int64_t o = s->lane_rows[sl * L + l];
                if (o == SQ_SELL_EMPTY || base + o < r0 || base + o >= r1) continue;
                float *d = dst + (base + o - r0) * ld;
                for (int64_t j = j0; j < j0 + s->lane_counts[sl * L + l]; j++) {
                    const int64_t q = j * L + l;
                    if (s->compact) d[((const uint16_t *)s->cols)[q]] += sq_f16_to_f32_1(((const uint16_t *)s->vals)[q]);
                    else d[((const int32_t *)s->cols)[q]] += ((const float *)s->vals)[q];
                }
            }
        }
    }
}
