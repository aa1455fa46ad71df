// Kernels for the backward pass: a strided GEMM with store / add / add-square epilogues, used for
// dX = dY W, dW = dY^T X (squared into the Fisher accumulator at once), and attention's gradients.
// Run-time dispatch on sq_isa(): an AVX2+FMA register tile (6 x 16, 12 accumulators) and a scalar path.
// AVX-512 machines use the AVX2 path (the lead may add a wider tile).
#include "sq_backward.h"
#include "sq_dense.h"
#include <stdlib.h>
#if defined(__x86_64__)
#include <immintrin.h>
#define SQ_X86 1
#define T_AVX2 __attribute__((target("avx2,fma,f16c")))
#endif

enum { MR = 6, NR = 16, KC = 256, IB = 96 };

static inline void epilogue1(float *o, float c, int mode) {
    if (mode == SQ_BW_STORE) *o = c;
    else if (mode == SQ_BW_ADD) *o += c;
    else *o += c * c;
}

// Scalar: rows [i0, i1), columns [j0, j1), reduction [p0, p1).
static void block_scalar(const float *a, int64_t sai, int64_t sap, const float *b, int64_t ldb, float *out,
                         int64_t ldo, int64_t i0, int64_t i1, int64_t p0, int64_t p1, int64_t j0, int64_t j1, int mode) {
    for (int64_t i = i0; i < i1; i++) {
        for (int64_t j = j0; j < j1; j++) {
            float s = 0;
            for (int64_t p = p0; p < p1; p++) s += a[i * sai + p * sap] * b[p * ldb + j];
            epilogue1(out + i * ldo + j, s, mode);
        }
    }
}

#ifdef SQ_X86
// Per-thread packing buffers: A as [tile][p][MR] (tail tile zero-padded), B as [column block][p][NR].
static _Thread_local float *t_pa = NULL, *t_pb = NULL;
static _Thread_local int64_t t_pa_n = 0, t_pb_n = 0;

static float *grow(float **buf, int64_t *cap, int64_t n) {
    if (*cap < n) {
        free(*buf);
        *buf = NULL;
        if (posix_memalign((void **)buf, 64, (size_t)n * sizeof(float)) != 0) *buf = NULL;
        *cap = *buf ? n : 0;
    }
    return *buf;
}

// C[mr x 16] = sum_p pa[p][0..mr) (x) pb[p][0..16), combined into out by mode.
T_AVX2 static inline __attribute__((always_inline)) void
micro_avx2(const int mr, const float *pa, const float *pb, float *out, int64_t ldo, int64_t kc, int mode) {
    __m256 c0[MR], c1[MR];
    for (int i = 0; i < mr; i++) { c0[i] = _mm256_setzero_ps(); c1[i] = _mm256_setzero_ps(); }
    for (int64_t p = 0; p < kc; p++) {
        __m256 b0 = _mm256_load_ps(pb), b1 = _mm256_load_ps(pb + 8);
        for (int i = 0; i < mr; i++) {
            __m256 av = _mm256_broadcast_ss(pa + i);
            c0[i] = _mm256_fmadd_ps(av, b0, c0[i]);
            c1[i] = _mm256_fmadd_ps(av, b1, c1[i]);
        }
        pa += MR;
        pb += NR;
    }
    for (int i = 0; i < mr; i++) {
        float *o = out + i * ldo;
        if (mode == SQ_BW_STORE) {
            _mm256_storeu_ps(o, c0[i]);
            _mm256_storeu_ps(o + 8, c1[i]);
        } else if (mode == SQ_BW_ADD) {
            _mm256_storeu_ps(o, _mm256_add_ps(_mm256_loadu_ps(o), c0[i]));
            _mm256_storeu_ps(o + 8, _mm256_add_ps(_mm256_loadu_ps(o + 8), c1[i]));
        } else {
            _mm256_storeu_ps(o, _mm256_fmadd_ps(c0[i], c0[i], _mm256_loadu_ps(o)));
            _mm256_storeu_ps(o + 8, _mm256_fmadd_ps(c1[i], c1[i], _mm256_loadu_ps(o + 8)));
        }
    }
}

T_AVX2 static void micro_any_avx2(int mr, const float *pa, const float *pb, float *out, int64_t ldo, int64_t kc, int mode) {
    switch (mr) {
    case 6: micro_avx2(6, pa, pb, out, ldo, kc, mode); break;
    case 5: micro_avx2(5, pa, pb, out, ldo, kc, mode); break;
    case 4: micro_avx2(4, pa, pb, out, ldo, kc, mode); break;
    case 3: micro_avx2(3, pa, pb, out, ldo, kc, mode); break;
    case 2: micro_avx2(2, pa, pb, out, ldo, kc, mode); break;
    default: micro_avx2(1, pa, pb, out, ldo, kc, mode); break;
    }
}

T_AVX2 static void pack_b_avx2(const float *b, int64_t ldb, int64_t pk, int64_t nblocks, float *pb) {
    for (int64_t jb = 0; jb < nblocks; jb++) {
        float *dst = pb + jb * pk * NR;
        const float *src = b + jb * NR;
        for (int64_t p = 0; p < pk; p++) {
            _mm256_store_ps(dst + p * NR, _mm256_loadu_ps(src + p * ldb));
            _mm256_store_ps(dst + p * NR + 8, _mm256_loadu_ps(src + p * ldb + 8));
        }
    }
}

static void pack_a(const float *a, int64_t sai, int64_t sap, int64_t rows, int64_t pk, float *pa) {
    for (int64_t t = 0; t < rows; t += MR) {
        int64_t mr = rows - t < MR ? rows - t : MR;
        float *dst = pa + t * pk;  // tile t/MR starts at (t/MR) * pk * MR
        if (sap == 1) {
            for (int64_t i = 0; i < MR; i++) {
                if (i < mr) { const float *src = a + (t + i) * sai; for (int64_t p = 0; p < pk; p++) dst[p * MR + i] = src[p]; }
                else for (int64_t p = 0; p < pk; p++) dst[p * MR + i] = 0;
            }
        } else {
            for (int64_t p = 0; p < pk; p++) {
                const float *src = a + t * sai + p * sap;
                for (int64_t i = 0; i < MR; i++) dst[p * MR + i] = i < mr ? src[i * sai] : 0;
            }
        }
    }
}

// Goto-style: for each reduction block, B (all full column blocks) is packed once, then A in blocks
// of IB rows; the 6 x 16 tile runs over packed panels. Tail columns (n % 16) take the scalar path.
T_AVX2 static void gemm_avx2(const float *a, int64_t sai, int64_t sap, const float *b, int64_t ldb, float *out,
                             int64_t ldo, int64_t m, int64_t kdim, int64_t j0, int64_t j1, int mode) {
    int64_t kc = mode == SQ_BW_ADD_SQUARE ? kdim : KC;
    if (kc <= 0) kc = 1;
    int64_t nblocks = (j1 - j0) / NR, jfull = j0 + nblocks * NR;
    float *pb = nblocks ? grow(&t_pb, &t_pb_n, nblocks * NR * kc) : NULL;
    float *pa = grow(&t_pa, &t_pa_n, (IB + MR) * kc);
    if ((nblocks && !pb) || !pa) { block_scalar(a, sai, sap, b, ldb, out, ldo, 0, m, 0, kdim, j0, j1, mode); return; }
    for (int64_t p0 = 0; p0 < kdim || (p0 == 0 && kdim == 0); p0 += kc) {
        int64_t pk = kdim - p0 < kc ? kdim - p0 : kc;
        int md = p0 == 0 ? mode : SQ_BW_ADD;  // later reduction blocks add to what the first wrote
        if (nblocks) pack_b_avx2(b + p0 * ldb + j0, ldb, pk, nblocks, pb);
        for (int64_t ib = 0; ib < m; ib += IB) {
            int64_t ie = ib + IB < m ? ib + IB : m;
            if (nblocks) {
                pack_a(a + ib * sai + p0 * sap, sai, sap, ie - ib, pk, pa);
                for (int64_t jb = 0; jb < nblocks; jb++) {
                    const float *pbj = pb + jb * pk * NR;
                    for (int64_t i = ib; i < ie; i += MR) {
                        int mr = (int)(ie - i < MR ? ie - i : MR);
                        micro_any_avx2(mr, pa + (i - ib) * pk, pbj, out + i * ldo + j0 + jb * NR, ldo, pk, md);
                    }
                }
            }
            if (jfull < j1) block_scalar(a, sai, sap, b, ldb, out, ldo, ib, ie, p0, p0 + pk, jfull, j1, md);
        }
        if (kdim == 0) break;
    }
}
#endif

void sq_gemm_strided_f32(const float *a, int64_t sai, int64_t sap, const float *b, int64_t ldb,
                         float *out, int64_t ldo, int64_t m, int64_t kdim, int64_t j0, int64_t j1, int mode) {
    if (m <= 0 || j1 <= j0) return;
#ifdef SQ_X86
    if (sq_isa() >= SQ_ISA_AVX2) { gemm_avx2(a, sai, sap, b, ldb, out, ldo, m, kdim, j0, j1, mode); return; }
#endif
    block_scalar(a, sai, sap, b, ldb, out, ldo, 0, m, 0, kdim, j0, j1, mode);
}

#ifdef SQ_X86
T_AVX2 static void add_square_avx2(const float *x, float *out, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        _mm256_storeu_ps(out + i, _mm256_fmadd_ps(v, v, _mm256_loadu_ps(out + i)));
    }
    for (; i < n; i++) out[i] += x[i] * x[i];
}
#endif

void sq_add_square_f32(const float *x, float *out, int64_t n) {
#ifdef SQ_X86
    if (sq_isa() >= SQ_ISA_AVX2) { add_square_avx2(x, out, n); return; }
#endif
    for (int64_t i = 0; i < n; i++) out[i] += x[i] * x[i];
}
