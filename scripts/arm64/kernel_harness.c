// ARM64 kernel harness: every NEON kernel of CSqueezeKernels against the portable scalar kernel on
// random shapes (lengths that are not multiples of the vector width, 3- and 4-bit tables), at every
// ISA level from NEON up to the one in use (sq_isa(): the CPU's, lowered by SQUEEZE_ISA). Built with
// aarch64-linux-gnu-gcc together with the C target's sources and run under qemu-aarch64 by run.sh.
//
// Tolerances are those of Tests/SqueezeKernelsTests: float sums in another order within
// 1e-5 * sum|terms| (plus 1e-30); bit for bit where the order is the scalar kernel's (the int8 LUT,
// Q8, sparse and backward paths; conversions, row decoding and activation quantization are exact).
// Activations are checked against a double-precision reference instead (softmax within 4e-6
// relative, SiLU within 1e-6, as DenseTests), at every level including scalar.
//
// Usage: kernel_harness [expected-level]   (neon, dotprod, i8mm or scalar: fails unless sq_isa() is it)
#include "sq_attention.h"
#include "sq_backward.h"
#include "sq_dense.h"
#include "sq_lut.h"
#include "sq_q8.h"
#include "sq_sparse.h"
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *level_name(int l) {
    switch (l) {
    case SQ_ISA_SCALAR: return "scalar";
    case SQ_ISA_NEON: return "neon";
    case SQ_ISA_DOTPROD: return "dotprod";
    case SQ_ISA_I8MM: return "i8mm";
    default: return "other";
    }
}

// ---------------------------------------------------------------- random numbers (xorshift64*)
static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void) {
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return g_rng * 0x2545F4914F6CDD1Dull;
}
static int64_t rnd_int(int64_t lo, int64_t hi) { return lo + (int64_t)(rnd() % (uint64_t)(hi - lo + 1)); }
static float rnd_float(void) { return (float)((double)(rnd() >> 11) / 9007199254740992.0 * 2.0 - 1.0); }
static void *zalloc(size_t n) {
    void *p = aligned_alloc(64, (n + 63) / 64 * 64 + 64);
    memset(p, 0, (n + 63) / 64 * 64 + 64);
    return p;
}

// ---------------------------------------------------------------- checks
static int g_failures = 0, g_checks = 0;
static const char *g_what = "";
static int g_level = 0;

static void fail(const char *fmt, double a, double b, int64_t i) {
    if (g_failures < 20) printf("FAIL [%s] %s at %lld: %.9g vs %.9g\n", level_name(g_level), fmt, (long long)i, a, b);
    g_failures++;
}
// |got - want| <= tol (counted once per call).
static void near(const char *what, const float *got, const float *want, const double *tol, int64_t n) {
    g_checks++;
    for (int64_t i = 0; i < n; i++)
        if (!(fabs((double)got[i] - want[i]) <= tol[i]) && !(got[i] == want[i])) { fail(what, got[i], want[i], i); return; }
}
static void exact_bytes(const char *what, const void *got, const void *want, size_t n) {
    g_checks++;
    const uint8_t *a = got, *b = want;
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i]) { fail(what, a[i], b[i], (int64_t)i); return; }
}

// Floats bit for bit, except that a NaN only needs to be a NaN (widening quiets signalling NaNs, as
// F16C does; the scalar code keeps them signalling).
static void exact_or_nan(const char *what, const float *got, const float *want, int64_t n) {
    g_checks++;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(want[i]) && isnan(got[i])) continue;
        if (memcmp(got + i, want + i, 4) != 0) { fail(what, got[i], want[i], i); return; }
    }
}

// ---------------------------------------------------------------- LUT
static void check_lut(int level) {
    for (int iter = 0; iter < 40; iter++) {
        const int bits = iter & 1 ? 3 : 4;
        const int64_t rows = rnd_int(1, 37), cols = rnd_int(1, 700), kpad = sq_lut_padded_cols(bits, cols);
        const int64_t rb = sq_lut_row_bytes(bits, kpad), nb = kpad / SQ_LUT_QBLOCK;
        const int64_t ms[] = {1, 2, 3, 4, 5, 8, 9};
        const int64_t m = ms[iter % 7];
        uint8_t *idx = zalloc((size_t)(rows * cols)), *w = zalloc((size_t)(rows * rb)), *qt = zalloc((size_t)rows * 16);
        float *lut = zalloc((size_t)rows * 16 * 4), *sc = zalloc((size_t)rows * 4), *off = zalloc((size_t)rows * 4);
        float *x = zalloc((size_t)(m * kpad) * 4);
        for (int64_t i = 0; i < rows * cols; i++) idx[i] = (uint8_t)(rnd() & ((1u << bits) - 1));
        for (int64_t i = 0; i < rows * 16; i++) lut[i] = rnd_float() * 0.1f;
        for (int64_t t = 0; t < m; t++)
            for (int64_t i = 0; i < cols; i++) x[t * kpad + i] = rnd_float() * (t == 1 ? 1000.0f : 1.0f);
        sq_lut_pack(bits, idx, cols, cols, kpad, w, 0, rows);
        sq_lut_quantize_tables(bits, lut, 0, rows, qt, sc, off);
        // magnitudes sum |w x| per output, for the tolerance
        double *tol = zalloc((size_t)(m * rows) * 8);
        for (int64_t t = 0; t < m; t++)
            for (int64_t r = 0; r < rows; r++) {
                double s = 0;
                for (int64_t i = 0; i < cols; i++) s += fabs(lut[r * 16 + idx[r * cols + i]] * x[t * kpad + i]);
                tol[t * rows + r] = 1e-5 * s + 1e-30;
            }
        float *ys = zalloc((size_t)(m * rows) * 4), *yv = zalloc((size_t)(m * rows) * 4);
        // float path, whole range and a sub-range
        sq_set_isa(SQ_ISA_SCALAR);
        sq_lut_gemm_f32(bits, w, lut, x, kpad, m, ys, rows, kpad, 0, rows);
        sq_set_isa(level);
        sq_lut_gemm_f32(bits, w, lut, x, kpad, m, yv, rows, kpad, 0, rows);
        g_what = "lut gemm f32";
        near(g_what, yv, ys, tol, m * rows);
        // row decoding: exact
        float *ds = zalloc((size_t)kpad * 4), *dv = zalloc((size_t)kpad * 4);
        for (int64_t r = 0; r < rows; r++) {
            sq_set_isa(SQ_ISA_SCALAR);
            sq_lut_dequantize_row(bits, w, lut, kpad, r, ds);
            sq_set_isa(level);
            sq_lut_dequantize_row(bits, w, lut, kpad, r, dv);
            exact_bytes("lut dequantize row", dv, ds, (size_t)kpad * 4);
        }
        // int8 path: activation quantization exact, products exact (integer blocks in scalar order)
        int8_t *xqs = zalloc((size_t)(m * kpad)), *xqv = zalloc((size_t)(m * kpad));
        float *dsc = zalloc((size_t)(m * nb) * 4), *dvc = zalloc((size_t)(m * nb) * 4);
        float *sxs = zalloc((size_t)m * 4), *sxv = zalloc((size_t)m * 4);
        for (int64_t t = 0; t < m; t++) {
            sq_set_isa(SQ_ISA_SCALAR);
            sq_lut_quantize_x(x + t * kpad, cols, kpad, xqs + t * kpad, dsc + t * nb, sxs + t);
            sq_set_isa(level);
            sq_lut_quantize_x(x + t * kpad, cols, kpad, xqv + t * kpad, dvc + t * nb, sxv + t);
        }
        exact_bytes("lut quantize x (codes)", xqv, xqs, (size_t)(m * kpad));
        exact_bytes("lut quantize x (scales)", dvc, dsc, (size_t)(m * nb) * 4);
        exact_bytes("lut quantize x (sums)", sxv, sxs, (size_t)m * 4);
        sq_set_isa(SQ_ISA_SCALAR);
        sq_lut_gemm_i8(bits, w, qt, sc, off, xqs, dsc, sxs, m, ys, rows, kpad, 0, rows);
        sq_set_isa(level);
        memset(yv, 0, (size_t)(m * rows) * 4);
        int64_t mid = rows / 3;  // two calls: row ranges that do not start at a multiple of 4
        sq_lut_gemm_i8(bits, w, qt, sc, off, xqs, dsc, sxs, m, yv, rows, kpad, 0, mid);
        sq_lut_gemm_i8(bits, w, qt, sc, off, xqs, dsc, sxs, m, yv, rows, kpad, mid, rows);
        exact_bytes("lut gemm i8", yv, ys, (size_t)(m * rows) * 4);
        free(idx); free(w); free(qt); free(lut); free(sc); free(off); free(x); free(tol); free(ys); free(yv);
        free(ds); free(dv); free(xqs); free(xqv); free(dsc); free(dvc); free(sxs); free(sxv);
    }
}

// ---------------------------------------------------------------- dense and conversions
static void check_dense(int level) {
    // conversions: every F16 pattern widened, random F32 patterns (NaNs, subnormals, ties) narrowed
    {
        const int64_t n = 65536 + 7;
        uint16_t *h = zalloc((size_t)n * 2), *hs = zalloc((size_t)n * 2), *hv = zalloc((size_t)n * 2);
        float *fs = zalloc((size_t)n * 4), *fv = zalloc((size_t)n * 4), *src = zalloc((size_t)n * 4);
        for (int64_t i = 0; i < n; i++) h[i] = (uint16_t)i;
        for (int64_t i = 0; i < n; i++) {
            uint32_t b = (uint32_t)rnd();
            if (i % 3 == 0) b &= 0x8fffffffu;                      // small exponents: F16 subnormals, zero
            if (i % 5 == 0) b = (b & 0xffff0000u) | 0x8000u;         // exact ties for BF16
            if (i % 7 == 0) b = (b & 0xffffe000u) | 0x1000u;         // exact ties for F16
            memcpy(src + i, &b, 4);
        }
        sq_set_isa(SQ_ISA_SCALAR);
        sq_f16_to_f32(h, fs, n);
        sq_set_isa(level);
        sq_f16_to_f32(h, fv, n);
        exact_or_nan("f16 to f32", fv, fs, n);
        sq_set_isa(SQ_ISA_SCALAR);
        sq_bf16_to_f32(h, fs, n);
        sq_set_isa(level);
        sq_bf16_to_f32(h, fv, n);
        exact_bytes("bf16 to f32", fv, fs, (size_t)n * 4);
        sq_set_isa(SQ_ISA_SCALAR);
        sq_f32_to_f16(src, hs, n);
        sq_set_isa(level);
        sq_f32_to_f16(src, hv, n);
        exact_bytes("f32 to f16", hv, hs, (size_t)n * 2);
        sq_set_isa(SQ_ISA_SCALAR);
        sq_f32_to_bf16(src, hs, n);
        sq_set_isa(level);
        sq_f32_to_bf16(src, hv, n);
        exact_bytes("f32 to bf16", hv, hs, (size_t)n * 2);
        free(h); free(hs); free(hv); free(fs); free(fv); free(src);
    }
    for (int iter = 0; iter < 30; iter++) {
        const int64_t rows = rnd_int(1, 23), k = rnd_int(1, 300), m = rnd_int(1, 11), ld = k + rnd_int(0, 3);
        float *w = zalloc((size_t)(rows * ld) * 4), *x = zalloc((size_t)(m * ld) * 4);
        uint16_t *wh = zalloc((size_t)(rows * ld) * 2), *wb = zalloc((size_t)(rows * ld) * 2);
        for (int64_t i = 0; i < rows * ld; i++) {
            w[i] = rnd_float();
            wh[i] = sq_f32_to_f16_1(w[i]);
            uint32_t b;
            memcpy(&b, w + i, 4);
            wb[i] = (uint16_t)(b >> 16);
        }
        for (int64_t i = 0; i < m * ld; i++) x[i] = rnd_float();
        const size_t ny = (size_t)(m * rows > ld ? m * rows : ld);
        float *ys = zalloc(ny * 4), *yv = zalloc(ny * 4);
        double *tol = zalloc(ny * 8);
        for (int dt = 0; dt < 3; dt++) {
            // tolerance from sum |w x| with the weights as stored
            for (int64_t t = 0; t < m; t++)
                for (int64_t r = 0; r < rows; r++) {
                    double s = 0;
                    for (int64_t i = 0; i < k; i++) {
                        float wv = dt == 0 ? w[r * ld + i] : dt == 1 ? sq_f16_to_f32_1(wh[r * ld + i]) : 0;
                        if (dt == 2) {
                            uint32_t b = (uint32_t)wb[r * ld + i] << 16;
                            memcpy(&wv, &b, 4);
                        }
                        s += fabs((double)wv * x[t * ld + i]);
                    }
                    tol[t * rows + r] = 1e-5 * s + 1e-30;
                }
            for (int variant = 0; variant < 2; variant++) {  // GEMV (token 0 only), GEMM
                for (int pass = 0; pass < 2; pass++) {
                    float *y = pass ? yv : ys;
                    sq_set_isa(pass ? level : SQ_ISA_SCALAR);
                    if (variant == 0) {
                        if (dt == 0) sq_gemv_f32(w, ld, x, y, k, 0, rows);
                        else if (dt == 1) sq_gemv_f16(wh, ld, x, y, k, 0, rows);
                        else sq_gemv_bf16(wb, ld, x, y, k, 0, rows);
                    } else {
                        if (dt == 0) sq_gemm_f32(x, ld, w, ld, y, rows, m, k, 0, rows);
                        else if (dt == 1) sq_gemm_f16(x, ld, wh, ld, y, rows, m, k, 0, rows);
                        else sq_gemm_bf16(x, ld, wb, ld, y, rows, m, k, 0, rows);
                    }
                }
                static const char *names[2][3] = {{"gemv f32", "gemv f16", "gemv bf16"}, {"gemm f32", "gemm f16", "gemm bf16"}};
                near(names[variant][dt], yv, ys, tol, variant == 0 ? rows : m * rows);
            }
        }
        // dot and axpy
        {
            float ds, dv;
            double s = 0;
            for (int64_t i = 0; i < k; i++) s += fabs((double)w[i] * x[i]);
            sq_set_isa(SQ_ISA_SCALAR);
            ds = sq_dot_f32(w, x, k);
            sq_set_isa(level);
            dv = sq_dot_f32(w, x, k);
            double t1 = 1e-5 * s + 1e-30;
            near("dot f32", &dv, &ds, &t1, 1);
            memcpy(ys, x, (size_t)k * 4);
            memcpy(yv, x, (size_t)k * 4);
            sq_set_isa(SQ_ISA_SCALAR);
            sq_axpy_f32(0.37f, w, ys, k);
            sq_set_isa(level);
            sq_axpy_f32(0.37f, w, yv, k);
            for (int64_t i = 0; i < k; i++) tol[i] = 1e-6 * (fabs(0.37 * w[i]) + fabs(x[i])) + 1e-30;
            near("axpy f32", yv, ys, tol, k);
            const int64_t n = rows * ld;
            for (int64_t i = 0; i < n; i++) s += fabs(w[i]);
            sq_set_isa(SQ_ISA_SCALAR);
            ds = sq_read_sum_f32(w, n);
            sq_set_isa(level);
            dv = sq_read_sum_f32(w, n);
            t1 = 1e-5 * s;
            near("read sum f32", &dv, &ds, &t1, 1);
        }
        free(w); free(x); free(wh); free(wb); free(ys); free(yv); free(tol);
    }
}

// ---------------------------------------------------------------- Q8 (8-bit blocks)
static void check_q8(int level) {
    for (int iter = 0; iter < 30; iter++) {
        const int64_t rows = rnd_int(1, 29), k = rnd_int(1, 400), kpad = (k + SQ_Q8_BLOCK - 1) / SQ_Q8_BLOCK * SQ_Q8_BLOCK;
        const int64_t m = rnd_int(1, 7), nb = kpad / SQ_Q8_BLOCK;
        float *w = zalloc((size_t)(rows * k) * 4), *x = zalloc((size_t)(m * k) * 4);
        for (int64_t i = 0; i < rows * k; i++) w[i] = rnd_float();
        for (int64_t i = 0; i < m * k; i++) x[i] = rnd_float() * 3;
        int8_t *wq = zalloc((size_t)(rows * kpad)), *xq = zalloc((size_t)(m * kpad));
        float *wd = zalloc((size_t)(rows * nb) * 4), *xd = zalloc((size_t)(m * nb) * 4);
        sq_q8_quantize_rows(w, k, k, kpad, 0, rows, wq, wd);
        for (int64_t t = 0; t < m; t++) sq_q8_quantize_x(x + t * k, k, kpad, xq + t * kpad, xd + t * nb);
        float *ys = zalloc((size_t)(m * rows) * 4), *yv = zalloc((size_t)(m * rows) * 4);
        sq_set_isa(SQ_ISA_SCALAR);
        sq_q8_gemm(wq, wd, kpad, xq, xd, m, ys, rows, 0, rows);
        sq_set_isa(level);
        const int64_t mid = rows / 3;
        sq_q8_gemm(wq, wd, kpad, xq, xd, m, yv, rows, 0, mid);
        sq_q8_gemm(wq, wd, kpad, xq, xd, m, yv, rows, mid, rows);
        exact_bytes("q8 gemm", yv, ys, (size_t)(m * rows) * 4);
        free(w); free(x); free(wq); free(xq); free(wd); free(xd); free(ys); free(yv);
    }
}

// ---------------------------------------------------------------- sparse (SELL-8-sigma)
// Bit for bit: every row's sum is formed in one order on every level (sq_sparse.h).
static void check_sparse(int level) {
    for (int iter = 0; iter < 16; iter++) {
        const int compact = iter & 1;
        const int64_t rows = rnd_int(1, 300), cols = rnd_int(1, 500), m = rnd_int(1, 4);
        int32_t *rowptr = zalloc((size_t)(rows + 1) * 4);
        for (int64_t r = 0; r < rows; r++) {
            int64_t c = rnd() % 4 == 0 ? rnd_int(0, 40) : rnd_int(0, 3);
            rowptr[r + 1] = rowptr[r] + (int32_t)(c < cols ? c : cols);
        }
        const int64_t nnz = rowptr[rows];
        int32_t *ci = zalloc((size_t)(nnz + 1) * 4);
        float *cv = zalloc((size_t)(nnz + 1) * 4);
        for (int64_t r = 0; r < rows; r++)
            for (int32_t p = rowptr[r]; p < rowptr[r + 1]; p++) {
                ci[p] = (int32_t)(rnd() % (uint64_t)cols);
                cv[p] = sq_f16_to_f32_1(sq_f32_to_f16_1(rnd_float()));  // exact in F16 (compact form)
            }
        const int64_t window = sq_sell_window(rows), nw = (rows + window - 1) / window;
        int64_t slices = 0, levels = 0;
        sq_sell_plan(rowptr, rows, window, &slices, &levels);
        int32_t *ws = zalloc((size_t)(nw + 1) * 4), *sl = zalloc((size_t)(slices + 1) * 4);
        uint16_t *lr = zalloc((size_t)(slices * 8) * 2);
        uint8_t *lc = zalloc((size_t)(slices * 8));
        int32_t *src = zalloc((size_t)(levels * 8) * 4);
        sq_sell_build(rowptr, rows, window, ws, sl, lr, lc, src);
        void *scols = zalloc((size_t)(levels * 8) * 4), *svals = zalloc((size_t)(levels * 8) * 4);
        for (int64_t q = 0; q < levels * 8; q++) {
            int32_t c = src[q] < 0 ? 0 : ci[src[q]];
            float v = src[q] < 0 ? 0 : cv[src[q]];
            if (compact) {
                ((uint16_t *)scols)[q] = (uint16_t)c;
                ((uint16_t *)svals)[q] = sq_f32_to_f16_1(v);
            } else {
                ((int32_t *)scols)[q] = c;
                ((float *)svals)[q] = v;
            }
        }
        sq_csr S = {rowptr, ws, sl, lr, lc, scols, svals, rows, cols, window, compact};
        float *x = zalloc((size_t)(m * cols) * 4), *ys = zalloc((size_t)(m * rows) * 4), *yv = zalloc((size_t)(m * rows) * 4);
        for (int64_t i = 0; i < m * cols; i++) x[i] = rnd_float();
        for (int64_t i = 0; i < m * rows; i++) ys[i] = yv[i] = rnd_float();
        sq_set_isa(SQ_ISA_SCALAR);
        sq_csr_spmm_range(&S, x, cols, m, ys, rows, 0, rows);
        sq_set_isa(level);
        const int64_t mid = rnd_int(0, rows);
        sq_csr_spmm_range(&S, x, cols, m, yv, rows, 0, mid);
        sq_csr_spmm_range(&S, x, cols, m, yv, rows, mid, rows);
        exact_bytes(compact ? "sparse spmm (compact)" : "sparse spmm (wide)", yv, ys, (size_t)(m * rows) * 4);
        free(rowptr); free(ci); free(cv); free(ws); free(sl); free(lr); free(lc); free(src); free(scols); free(svals);
        free(x); free(ys); free(yv);
    }
}

// ---------------------------------------------------------------- decode attention (F16 and 8-bit caches)
static void check_attention(int level) {
    for (int iter = 0; iter < 16; iter++) {
        const int64_t hd = rnd_int(1, 80), n = rnd_int(1, 150), g = rnd_int(1, 6), ldv = n + rnd_int(0, 5);
        const int64_t tiles = (n + SQ_KT - 1) / SQ_KT, ldq = hd + 3, lds = n + 2;
        const int64_t j0 = rnd_int(0, n - 1), j1 = rnd_int(j0 + 1, n);
        uint16_t *kt16 = zalloc((size_t)(tiles * hd * SQ_KT) * 2), *vt16 = zalloc((size_t)(hd * ldv) * 2);
        int8_t *kt8 = zalloc((size_t)(tiles * hd * SQ_KT)), *vt8 = zalloc((size_t)(hd * ldv));
        float *ks = zalloc((size_t)(tiles * SQ_KT) * 4), *vs = zalloc((size_t)ldv * 4);
        float *key = zalloc((size_t)hd * 4), *q = zalloc((size_t)(g * ldq) * 4), *p = zalloc((size_t)(g * ldv) * 4);
        float *kf = zalloc((size_t)(n * hd) * 4), *vf = zalloc((size_t)(n * hd) * 4);  // the stored values as floats
        float *kf8 = zalloc((size_t)(n * hd) * 4), *vf8 = zalloc((size_t)(n * hd) * 4);
        sq_set_isa(level);
        for (int64_t j = 0; j < n; j++) {
            for (int64_t d = 0; d < hd; d++) key[d] = rnd_float();
            sq_attn_store_key_kt16(key, hd, j, kt16);
            sq_attn_store_key_kt8(key, hd, j, kt8, ks);
            for (int64_t d = 0; d < hd; d++) {
                kf[j * hd + d] = sq_f16_to_f32_1(kt16[((j / SQ_KT) * hd + d) * SQ_KT + j % SQ_KT]);
                kf8[j * hd + d] = ks[j] * kt8[((j / SQ_KT) * hd + d) * SQ_KT + j % SQ_KT];
            }
            for (int64_t d = 0; d < hd; d++) key[d] = rnd_float();
            sq_attn_store_value_q8(key, hd, j, vt8, ldv, vs);
            for (int64_t d = 0; d < hd; d++) {
                vt16[d * ldv + j] = sq_f32_to_f16_1(key[d]);
                vf[j * hd + d] = sq_f16_to_f32_1(vt16[d * ldv + j]);
                vf8[j * hd + d] = vs[j] * vt8[d * ldv + j];
            }
        }
        for (int64_t i = 0; i < g * ldq; i++) q[i] = rnd_float();
        const size_t nout = (size_t)(g * lds > g * hd ? g * lds : g * hd);
        float *ss = zalloc(nout * 4), *sv = zalloc(nout * 4);
        double *tol = zalloc(nout * 8);
        for (int bits8 = 0; bits8 < 2; bits8++) {
            const float *kk = bits8 ? kf8 : kf;
            for (int64_t r = 0; r < g; r++)
                for (int64_t j = j0; j < j1; j++) {
                    double m = 0;
                    for (int64_t d = 0; d < hd; d++) m += fabs((double)q[r * ldq + d] * kk[j * hd + d]);
                    tol[r * lds + (j - j0)] = 1e-5 * m + 1e-30;
                }
            for (int pass = 0; pass < 2; pass++) {
                float *o = pass ? sv : ss;
                for (int64_t i = 0; i < g * lds; i++) o[i] = -7;
                sq_set_isa(pass ? level : SQ_ISA_SCALAR);
                if (bits8) sq_attn_scores_kt8(q, ldq, g, kt8, ks, hd, j0, j1, o, lds);
                else sq_attn_scores_kt16(q, ldq, g, kt16, hd, j0, j1, o, lds);
            }
            for (int64_t r = 0; r < g; r++)
                for (int64_t j = j1 - j0; j < lds; j++) tol[r * lds + j] = 0;  // never written: still -7
            near(bits8 ? "attention scores kt8" : "attention scores kt16", sv, ss, tol, g * lds);
            // weighted sums over positions [0, n)
            for (int64_t i = 0; i < g * ldv; i++) p[i] = (float)((double)(rnd() >> 11) / 9007199254740992.0);
            float *p2 = zalloc((size_t)(g * ldv) * 4);
            const float *vv = bits8 ? vf8 : vf;
            for (int64_t r = 0; r < g; r++)
                for (int64_t d = 0; d < hd; d++) {
                    double m = 0;
                    for (int64_t j = 0; j < n; j++) m += fabs((double)p[r * ldv + j] * vv[j * hd + d]);
                    tol[r * hd + d] = 1e-5 * m + 1e-30;
                }
            for (int pass = 0; pass < 2; pass++) {
                float *o = pass ? sv : ss;
                memcpy(p2, p, (size_t)(g * ldv) * 4);
                sq_set_isa(pass ? level : SQ_ISA_SCALAR);
                if (bits8) sq_attn_pv8(p2, ldv, g, vt8, ldv, vs, hd, n, o, hd);
                else sq_attn_pv16(p2, ldv, g, vt16, ldv, hd, n, o, hd);
            }
            near(bits8 ? "attention pv8" : "attention pv16", sv, ss, tol, g * hd);
            free(p2);
        }
        // conversions of cached keys and values to F32: exact
        const int64_t ldd = (j1 - j0) + 1;
        float *ds = zalloc((size_t)(hd * ldd) * 4), *dv = zalloc((size_t)(hd * ldd) * 4);
        for (int kind = 0; kind < 3; kind++) {
            for (int pass = 0; pass < 2; pass++) {
                float *o = pass ? dv : ds;
                sq_set_isa(pass ? level : SQ_ISA_SCALAR);
                if (kind == 0) sq_attn_keys_kt16_to_f32(kt16, hd, j0, j1, o, ldd);
                else if (kind == 1) sq_attn_keys_kt8_to_f32(kt8, ks, hd, j0, j1, o, ldd);
                else sq_attn_values_q8_to_f32(vt8, ldv, vs, hd, j0, j1, o, ldd);
            }
            exact_bytes(kind == 0 ? "keys kt16 to f32" : kind == 1 ? "keys kt8 to f32" : "values q8 to f32", dv, ds,
                        (size_t)(hd * ldd) * 4);
        }
        // the stored caches do not depend on the level
        uint16_t *kt16b = zalloc((size_t)(tiles * hd * SQ_KT) * 2);
        int8_t *kt8b = zalloc((size_t)(tiles * hd * SQ_KT));
        float *ksb = zalloc((size_t)(tiles * SQ_KT) * 4);
        sq_set_isa(SQ_ISA_SCALAR);
        for (int64_t j = 0; j < n; j++) {
            for (int64_t d = 0; d < hd; d++) key[d] = kf[j * hd + d] * 1.001f;
            sq_attn_store_key_kt16(key, hd, j, kt16);
            sq_attn_store_key_kt8(key, hd, j, kt8, ks);
        }
        sq_set_isa(level);
        for (int64_t j = 0; j < n; j++) {
            for (int64_t d = 0; d < hd; d++) key[d] = kf[j * hd + d] * 1.001f;
            sq_attn_store_key_kt16(key, hd, j, kt16b);
            sq_attn_store_key_kt8(key, hd, j, kt8b, ksb);
        }
        exact_bytes("store key kt16", kt16b, kt16, (size_t)(tiles * hd * SQ_KT) * 2);
        exact_bytes("store key kt8", kt8b, kt8, (size_t)(tiles * hd * SQ_KT));
        exact_bytes("store key kt8 scales", ksb, ks, (size_t)n * 4);
        free(kt16); free(vt16); free(kt8); free(vt8); free(ks); free(vs); free(key); free(q); free(p); free(kf); free(vf);
        free(kf8); free(vf8); free(ss); free(sv); free(tol); free(ds); free(dv); free(kt16b); free(kt8b); free(ksb);
    }
}

// ---------------------------------------------------------------- backward GEMM
// Against sq_gemm_general_scalar_f32: bit for bit (every sum over p in order with fused
// multiply-adds) for row-major B; B read transposed has no NEON variant and stays scalar.
static void check_backward(int level) {
    sq_set_isa(level);
    for (int iter = 0; iter < 24; iter++) {
        const int64_t m = rnd_int(1, 13), kdim = rnd_int(1, 90), n = rnd_int(1, 45), mode = iter % 3;
        const int64_t j0 = rnd_int(0, n - 1), j1 = rnd_int(j0 + 1, n), lda = kdim + 2, ldo = n + 1;
        const int trans = iter % 4 == 3;  // A read transposed (dW = dY^T X)
        float *a = zalloc((size_t)(kdim * (m + 2) + lda * m) * 4), *b = zalloc((size_t)(kdim * (n + 3)) * 4);
        float *os = zalloc((size_t)(m * ldo) * 4), *ov = zalloc((size_t)(m * ldo) * 4);
        for (int64_t i = 0; i < kdim * (m + 2) + lda * m; i++) a[i] = rnd_float();
        for (int64_t i = 0; i < kdim * (n + 3); i++) b[i] = rnd_float();
        for (int64_t i = 0; i < m * ldo; i++) os[i] = ov[i] = rnd_float();
        const int64_t sai = trans ? 1 : lda, sap = trans ? m + 2 : 1, sbp = n + 3;
        sq_gemm_general_scalar_f32(a, sai, sap, b, sbp, 1, os, ldo, m, kdim, j0, j1, (int)mode);
        sq_gemm_general_f32(a, sai, sap, b, sbp, 1, ov, ldo, m, kdim, j0, j1, (int)mode);
        exact_bytes("backward gemm", ov, os, (size_t)(m * ldo) * 4);
        float *sq = zalloc((size_t)n * 4), *sqv = zalloc((size_t)n * 4);
        memcpy(sq, os, (size_t)n * 4);
        memcpy(sqv, os, (size_t)n * 4);
        sq_set_isa(SQ_ISA_SCALAR);
        sq_add_square_f32(b, sq, n);
        sq_set_isa(level);
        sq_add_square_f32(b, sqv, n);
        exact_bytes("add square", sqv, sq, (size_t)n * 4);
        free(a); free(b); free(os); free(ov); free(sq); free(sqv);
    }
}

// ---------------------------------------------------------------- activations
// Against a double-precision reference with the tolerances of DenseTests.softmaxAndSiluMatchReference
// (the scalar kernels pass the same checks).
static void check_activations(int level) {
    sq_set_isa(level);
    const int64_t ns[] = {1, 3, 5, 8, 17, 100, 1000, 1003};
    for (int a = 0; a < 8; a++) {
        const int64_t n = ns[a];
        float *v = zalloc((size_t)n * 4), *sm = zalloc((size_t)n * 4), *u = zalloc((size_t)n * 4);
        float *out = zalloc((size_t)n * 4), *dg = zalloc((size_t)n * 4), *du = zalloc((size_t)n * 4);
        double *tol = zalloc((size_t)n * 8);
        float *want = zalloc((size_t)n * 4);
        for (int64_t i = 0; i < n; i++) { v[i] = rnd_float() * 30; u[i] = rnd_float(); dg[i] = rnd_float(); }
        double mx = v[0], sum = 0;
        for (int64_t i = 1; i < n; i++) mx = v[i] > mx ? v[i] : mx;
        for (int64_t i = 0; i < n; i++) sum += exp((double)v[i] - mx);
        const double lse_want = log(sum) + mx;
        memcpy(sm, v, (size_t)n * 4);
        float lse = sq_softmax_f32(sm, n), lse2 = sq_logsumexp_f32(v, n);
        float lw = (float)lse_want;
        double lt = 1e-5 * (fabs(lse_want) > 1 ? fabs(lse_want) : 1);
        near("softmax log-sum-exp", &lse, &lw, &lt, 1);
        near("logsumexp", &lse2, &lw, &lt, 1);
        for (int64_t i = 0; i < n; i++) {
            double w = exp((double)v[i] - mx) / sum;
            want[i] = (float)w;
            tol[i] = 4e-6 * w + 1e-12;
        }
        near("softmax", sm, want, tol, n);
        memcpy(sm, v, (size_t)n * 4);
        float lse3 = sq_softmax_scaled_f32(sm, n, 0.25f);
        exact_bytes("scaled softmax log-sum-exp", &lse3, &lse, 4);
        for (int64_t i = 0; i < n; i++) {
            double w = 0.25 * exp((double)v[i] - mx) / sum;
            want[i] = (float)w;
            tol[i] = 4e-6 * w + 1e-12;
        }
        near("scaled softmax", sm, want, tol, n);
        sq_silu_mul_f32(v, u, out, n);
        for (int64_t i = 0; i < n; i++) {
            double g = v[i], w = g / (1 + exp(-g)) * u[i];
            want[i] = (float)w;
            tol[i] = 1e-6 * (fabs(w) > 1 ? fabs(w) : 1);
        }
        near("silu mul", out, want, tol, n);
        float *da = zalloc((size_t)n * 4), *wantg = zalloc((size_t)n * 4);
        double *tolg = zalloc((size_t)n * 8);
        memcpy(da, dg, (size_t)n * 4);
        sq_silu_mul_backward_f32(v, u, dg, du, n);
        for (int64_t i = 0; i < n; i++) {
            double g = v[i], sg = 1 / (1 + exp(-g)), d = da[i];
            double wu = d * g * sg, wg = d * u[i] * sg * (1 + g * (1 - sg));
            want[i] = (float)wu;
            tol[i] = 1e-6 * (fabs(wu) > 1 ? fabs(wu) : 1);
            wantg[i] = (float)wg;
            tolg[i] = 1e-6 * (fabs(wg) > 1 ? fabs(wg) : 1);
        }
        near("silu mul backward du", du, want, tol, n);
        near("silu mul backward dg", dg, wantg, tolg, n);
        free(v); free(sm); free(u); free(out); free(dg); free(du); free(tol); free(want); free(da); free(wantg); free(tolg);
    }
}

int main(int argc, char **argv) {
    const int top = sq_isa();
    printf("features 0x%x, supported %s, in use %s, LUT variants \"%s\", Q8 variant \"%s\"\n", sq_cpu_features(),
           level_name(sq_isa_supported()), level_name(top), sq_lut_variant(), sq_q8_variant());
    if (argc > 1 && strcmp(argv[1], level_name(top)) != 0) {
        printf("FAIL: expected level %s, have %s\n", argv[1], level_name(top));
        return 1;
    }
    g_level = SQ_ISA_SCALAR;
    check_activations(SQ_ISA_SCALAR);
    for (int level = SQ_ISA_NEON; level <= top; level++) {
        g_level = level;
        sq_set_isa(level);
        const int before = g_checks, fails = g_failures;
        check_lut(level);
        check_dense(level);
        check_activations(level);
        check_q8(level);
        check_sparse(level);
        check_attention(level);
        check_backward(level);
        printf("level %-8s %d checks, %d failed\n", level_name(level), g_checks - before, g_failures - fails);
    }
    sq_set_isa(top);
    printf(g_failures ? "FAILED: %d of %d checks\n" : "ok: %d failures in %d checks\n", g_failures, g_checks);
    return g_failures != 0;
}
