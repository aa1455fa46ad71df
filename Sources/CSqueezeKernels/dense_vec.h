// Include template (no include guard): dot and axpy for one vector ISA. dense.c includes it once per
// ISA after sq_vec_<isa>.h (the vector operations; undefined at the end of this file). Tails are scalar.
#define VEC_FN(name) SQ_CAT(name, VEC_ISA)

// Two accumulators over 2 VN elements per step, so that two FMA chains are in flight.
VEC_T static float VEC_FN(dot)(const float *a, const float *b, int64_t n) {
    VF s0 = VZERO(), s1 = VZERO();
    int64_t i = 0;
    for (; i + 2 * VN <= n; i += 2 * VN) {
        s0 = VFMA(VLOAD(a + i), VLOAD(b + i), s0);
        s1 = VFMA(VLOAD(a + i + VN), VLOAD(b + i + VN), s1);
    }
    for (; i + VN <= n; i += VN) s0 = VFMA(VLOAD(a + i), VLOAD(b + i), s0);
    float s = VREDADD(VADD(s0, s1));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

VEC_T static void VEC_FN(axpy)(float a, const float *x, float *y, int64_t n) {
    VF va = VSET1(a);
    int64_t i = 0;
    for (; i + VN <= n; i += VN) VSTORE(y + i, VFMA(va, VLOAD(x + i), VLOAD(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

#undef VEC_FN
#include "sq_vec_undef.h"
