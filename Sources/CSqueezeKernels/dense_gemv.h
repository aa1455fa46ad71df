// Include template (no include guard): the GEMV of one weight type, y[r - r0] = W[r, 0..k) . x for
// r in [r0, r1), its AVX-512, AVX2 and scalar variants and its entry point sq_gemv_<type>.
// dense.c includes it once per type after defining
//   GEMV_TYPE             the type's name (f32, f16, bf16): functions gemv_<type>_<isa>, sq_gemv_<type>;
//   GEMV_WT               the element type of W;
//   GEMV_LOAD16(p)        16 elements as a __m512 (AVX-512); GEMV_MLOAD16(m, p) the same, masked;
//   GEMV_LOAD8(p)         8 elements as a __m256 (AVX2);
//   GEMV_LOAD4(p)         4 elements as a float32x4_t (ARM64 NEON);
//   GEMV_SCALAR(v)        one element as a float,
// and this file undefines them at its end.
#define GEMV_FN(isa) SQ_CAT(SQ_CAT(gemv, GEMV_TYPE), isa)

#ifdef SQ_X86
// Four rows at a time, 16 lanes, the tail masked.
T_AVX512 static void GEMV_FN(avx512)(const GEMV_WT *w, int64_t ldw, const float *x, float *y, int64_t k, int64_t r0,
                             int64_t r1) {
    int64_t kk = k & ~(int64_t)15;
    __mmask16 tail = (__mmask16)((1u << (k - kk)) - 1);
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) {
        const GEMV_WT *w0 = w + r * ldw, *w1 = w0 + ldw, *w2 = w1 + ldw, *w3 = w2 + ldw;
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
        __m512 a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
        for (int64_t i = 0; i < kk; i += 16) {
            __m512 xv = _mm512_loadu_ps(x + i);
            a0 = _mm512_fmadd_ps(GEMV_LOAD16(w0 + i), xv, a0);
            a1 = _mm512_fmadd_ps(GEMV_LOAD16(w1 + i), xv, a1);
            a2 = _mm512_fmadd_ps(GEMV_LOAD16(w2 + i), xv, a2);
            a3 = _mm512_fmadd_ps(GEMV_LOAD16(w3 + i), xv, a3);
        }
        if (tail) {
            __m512 xv = _mm512_maskz_loadu_ps(tail, x + kk);
            a0 = _mm512_fmadd_ps(GEMV_MLOAD16(tail, w0 + kk), xv, a0);
            a1 = _mm512_fmadd_ps(GEMV_MLOAD16(tail, w1 + kk), xv, a1);
            a2 = _mm512_fmadd_ps(GEMV_MLOAD16(tail, w2 + kk), xv, a2);
            a3 = _mm512_fmadd_ps(GEMV_MLOAD16(tail, w3 + kk), xv, a3);
        }
        y[r - r0] = _mm512_reduce_add_ps(a0);
        y[r - r0 + 1] = _mm512_reduce_add_ps(a1);
        y[r - r0 + 2] = _mm512_reduce_add_ps(a2);
        y[r - r0 + 3] = _mm512_reduce_add_ps(a3);
    }
    for (; r < r1; r++) {
        const GEMV_WT *w0 = w + r * ldw;
        __m512 a0 = _mm512_setzero_ps();
        for (int64_t i = 0; i < kk; i += 16) a0 = _mm512_fmadd_ps(GEMV_LOAD16(w0 + i), _mm512_loadu_ps(x + i), a0);
        if (tail) a0 = _mm512_fmadd_ps(GEMV_MLOAD16(tail, w0 + kk), _mm512_maskz_loadu_ps(tail, x + kk), a0);
        y[r - r0] = _mm512_reduce_add_ps(a0);
    }
}

// Four rows at a time, taken from the four quarters of [r0, r1): four far-apart sequential streams,
// which the hardware prefetchers follow (docs/kernels.md); each also prefetched GEMV_PF bytes ahead.
T_AVX2 static void GEMV_FN(avx2)(const GEMV_WT *w, int64_t ldw, const float *x, float *y, int64_t k, int64_t r0,
                           int64_t r1) {
    const int64_t kk = k & ~(int64_t)15, q = (r1 - r0) / 4;
    for (int64_t j = 0; j < q; j++) {
        const GEMV_WT *w0 = w + (r0 + j) * ldw, *w1 = w0 + q * ldw, *w2 = w1 + q * ldw, *w3 = w2 + q * ldw;
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        __m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
        __m256 b0 = _mm256_setzero_ps(), b1 = _mm256_setzero_ps();
        __m256 b2 = _mm256_setzero_ps(), b3 = _mm256_setzero_ps();
        for (int64_t i = 0; i < kk; i += 16) {
            _mm_prefetch((const char *)(w0 + i) + GEMV_PF, _MM_HINT_T0);
            _mm_prefetch((const char *)(w1 + i) + GEMV_PF, _MM_HINT_T0);
            _mm_prefetch((const char *)(w2 + i) + GEMV_PF, _MM_HINT_T0);
            _mm_prefetch((const char *)(w3 + i) + GEMV_PF, _MM_HINT_T0);
            __m256 xv = _mm256_loadu_ps(x + i), xw = _mm256_loadu_ps(x + i + 8);
            a0 = _mm256_fmadd_ps(GEMV_LOAD8(w0 + i), xv, a0); b0 = _mm256_fmadd_ps(GEMV_LOAD8(w0 + i + 8), xw, b0);
            a1 = _mm256_fmadd_ps(GEMV_LOAD8(w1 + i), xv, a1); b1 = _mm256_fmadd_ps(GEMV_LOAD8(w1 + i + 8), xw, b1);
            a2 = _mm256_fmadd_ps(GEMV_LOAD8(w2 + i), xv, a2); b2 = _mm256_fmadd_ps(GEMV_LOAD8(w2 + i + 8), xw, b2);
            a3 = _mm256_fmadd_ps(GEMV_LOAD8(w3 + i), xv, a3); b3 = _mm256_fmadd_ps(GEMV_LOAD8(w3 + i + 8), xw, b3);
        }
        float s0 = sq_hsum8(_mm256_add_ps(a0, b0)), s1 = sq_hsum8(_mm256_add_ps(a1, b1));
        float s2 = sq_hsum8(_mm256_add_ps(a2, b2)), s3 = sq_hsum8(_mm256_add_ps(a3, b3));
        for (int64_t i = kk; i < k; i++) {
            s0 += GEMV_SCALAR(w0[i]) * x[i]; s1 += GEMV_SCALAR(w1[i]) * x[i];
            s2 += GEMV_SCALAR(w2[i]) * x[i]; s3 += GEMV_SCALAR(w3[i]) * x[i];
        }
        y[j] = s0; y[j + q] = s1; y[j + 2 * q] = s2; y[j + 3 * q] = s3;
    }
    for (int64_t r = r0 + 4 * q; r < r1; r++) {
        const GEMV_WT *w0 = w + r * ldw;
        __m256 a0 = _mm256_setzero_ps();
        int64_t k8 = k & ~(int64_t)7;
        for (int64_t i = 0; i < k8; i += 8) a0 = _mm256_fmadd_ps(GEMV_LOAD8(w0 + i), _mm256_loadu_ps(x + i), a0);
        float s = sq_hsum8(a0);
        for (int64_t i = k8; i < k; i++) s += GEMV_SCALAR(w0[i]) * x[i];
        y[r - r0] = s;
    }
}
#endif

#ifdef SQ_ARM
// Four adjacent rows at a time, 8 columns per step (two accumulators per row).
static void GEMV_FN(neon)(const GEMV_WT *w, int64_t ldw, const float *x, float *y, int64_t k, int64_t r0, int64_t r1) {
    const int64_t k8 = k & ~(int64_t)7;
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) {
        const GEMV_WT *wr[4] = {w + r * ldw, w + (r + 1) * ldw, w + (r + 2) * ldw, w + (r + 3) * ldw};
        float32x4_t a[4], b[4];
        for (int j = 0; j < 4; j++) a[j] = b[j] = vdupq_n_f32(0);
        for (int64_t i = 0; i < k8; i += 8) {
            const float32x4_t xv = vld1q_f32(x + i), xw = vld1q_f32(x + i + 4);
            for (int j = 0; j < 4; j++) {
                a[j] = vfmaq_f32(a[j], GEMV_LOAD4(wr[j] + i), xv);
                b[j] = vfmaq_f32(b[j], GEMV_LOAD4(wr[j] + i + 4), xw);
            }
        }
        for (int j = 0; j < 4; j++) {
            float s = sq_hsum4(vaddq_f32(a[j], b[j]));
            for (int64_t i = k8; i < k; i++) s += GEMV_SCALAR(wr[j][i]) * x[i];
            y[r - r0 + j] = s;
        }
    }
    for (; r < r1; r++) {
        const GEMV_WT *w0 = w + r * ldw;
        float32x4_t a = vdupq_n_f32(0), b = vdupq_n_f32(0);
        for (int64_t i = 0; i < k8; i += 8) {
            a = vfmaq_f32(a, GEMV_LOAD4(w0 + i), vld1q_f32(x + i));
            b = vfmaq_f32(b, GEMV_LOAD4(w0 + i + 4), vld1q_f32(x + i + 4));
        }
        float s = sq_hsum4(vaddq_f32(a, b));
        for (int64_t i = k8; i < k; i++) s += GEMV_SCALAR(w0[i]) * x[i];
        y[r - r0] = s;
    }
}
#endif

static void GEMV_FN(scalar)(const GEMV_WT *w, int64_t ldw, const float *x, float *y, int64_t k, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
        const GEMV_WT *w0 = w + r * ldw;
        float s = 0;
        for (int64_t i = 0; i < k; i++) s += GEMV_SCALAR(w0[i]) * x[i];
        y[r - r0] = s;
    }
}

void SQ_CAT(sq_gemv, GEMV_TYPE)(const GEMV_WT *w, int64_t ldw, const float *x, float *y, int64_t k, int64_t r0, int64_t r1) {
#ifdef SQ_X86
    int isa = sq_isa_fast();
    if (isa >= SQ_ISA_AVX512) { GEMV_FN(avx512)(w, ldw, x, y, k, r0, r1); return; }
    if (isa >= SQ_ISA_AVX2) { GEMV_FN(avx2)(w, ldw, x, y, k, r0, r1); return; }
#endif
#ifdef SQ_ARM
    if (sq_isa_fast() >= SQ_ISA_NEON) { GEMV_FN(neon)(w, ldw, x, y, k, r0, r1); return; }
#endif
    GEMV_FN(scalar)(w, ldw, x, y, k, r0, r1);
}

#undef GEMV_FN
#undef GEMV_TYPE
#undef GEMV_WT
#undef GEMV_LOAD16
#undef GEMV_MLOAD16
#undef GEMV_LOAD8
#undef GEMV_LOAD4
#undef GEMV_SCALAR
