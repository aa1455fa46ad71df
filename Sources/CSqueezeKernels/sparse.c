// Sparse CSR SpMV/SpMM (y += S x), split by nonzeros (see sq_sparse.h).
#include "sq_sparse.h"
#include "sq_dense.h"
#if defined(__x86_64__)
#include <immintrin.h>
#define SQ_X86 1
#define T_AVX2 __attribute__((target("avx2,fma,f16c")))
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

static float dot_scalar(const int32_t *cols, const float *vals, const float *x, int64_t p0, int64_t p1) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t p = p0;
    for (; p + 4 <= p1; p += 4) {
        s0 += vals[p] * x[cols[p]];
        s1 += vals[p + 1] * x[cols[p + 1]];
        s2 += vals[p + 2] * x[cols[p + 2]];
        s3 += vals[p + 3] * x[cols[p + 3]];
    }
    for (; p < p1; p++) s0 += vals[p] * x[cols[p]];
    return (s0 + s1) + (s2 + s3);
}

#ifdef SQ_X86
T_AVX2 static float dot_avx2(const int32_t *cols, const float *vals, const float *x, int64_t p0, int64_t p1) {
    __m256 acc = _mm256_setzero_ps();
    int64_t p = p0;
    for (; p + 8 <= p1; p += 8) {
        __m256i c = _mm256_loadu_si256((const __m256i *)(cols + p));
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(vals + p), _mm256_i32gather_ps(x, c, 4), acc);
    }
    __m128 lo = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    float s = _mm_cvtss_f32(lo);
    for (; p < p1; p++) s += vals[p] * x[cols[p]];
    return s;
}
#endif

static inline float dot(const int32_t *cols, const float *vals, const float *x, int64_t p0, int64_t p1) {
#ifdef SQ_X86
    if (p1 - p0 >= 16 && sq_isa() >= SQ_ISA_AVX2) return dot_avx2(cols, vals, x, p0, p1);
#endif
    return dot_scalar(cols, vals, x, p0, p1);
}

void sq_csr_spmm_part(const int32_t *rowptr, const int32_t *cols, const float *vals, const float *x,
                      int64_t ldx, int64_t m, float *y, int64_t ldy, int64_t p0, int64_t p1, int64_t rf,
                      int64_t rl, float *carry) {
    for (int64_t t = 0; t < 2 * m; t++) carry[t] = 0;
    if (p1 <= p0) return;
    for (int64_t r = rf; r <= rl; r++) {
        int64_t a = rowptr[r] > p0 ? rowptr[r] : p0;
        int64_t b = rowptr[r + 1] < p1 ? rowptr[r + 1] : p1;
        if (b <= a) continue;
        for (int64_t t = 0; t < m; t++) {
            float s = dot(cols, vals, x + t * ldx, a, b);
            if (r == rf) carry[t] += s;
            else if (r == rl) carry[m + t] += s;
            else y[t * ldy + r] += s;
        }
    }
}

void sq_csr_spmv_rows(const int32_t *rowptr, const int32_t *cols, const float *vals, const float *x, float *y,
                      int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
        int64_t a = rowptr[r], b = rowptr[r + 1];
        if (b > a) y[r] += dot(cols, vals, x, a, b);
    }
}
