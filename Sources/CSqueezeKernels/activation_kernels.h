// Include template (no include guard): softmax, log-sum-exp, SwiGLU and its backward for one vector
// ISA. activations.c includes it once per ISA after sq_vec_<isa>.h (the vector operations) and
//   VSCALE2N(p, n)  p * 2^n for integral n in [EXP_LO / ln2, 128];
//   EXP_LO          the clamp below which VSCALE2N would lose the result (exp flushes to 0),
// all undefined at the end of this file. Tails are scalar.
#define ACT_FN(name) SQ_CAT(name, VEC_ISA)

// exp(x) = 2^n p(r), r = x - n ln2 (ln2 split in two for accuracy), p of degree 6 (Cephes).
VEC_T static INL VF ACT_FN(vexp)(VF x) {
    x = VMIN(VMAX(x, VSET1(EXP_LO)), VSET1(88.72f));
    VF n = VROUND(VMUL(x, VSET1(1.44269504088896341f)));
    VF r = VFNMA(n, VSET1(0.693359375f), x);
    r = VFNMA(n, VSET1(-2.12194440e-4f), r);
    VF p = VSET1(1.9875691500E-4f);
    p = VFMA(p, r, VSET1(1.3981999507E-3f));
    p = VFMA(p, r, VSET1(8.3334519073E-3f));
    p = VFMA(p, r, VSET1(4.1665795894E-2f));
    p = VFMA(p, r, VSET1(1.6666665459E-1f));
    p = VFMA(p, r, VSET1(5.0000001201E-1f));
    p = VFMA(p, VMUL(r, r), VADD(r, VSET1(1.0f)));
    return VSCALE2N(p, n);
}
#define VEXP(v) ACT_FN(vexp)(v)

// Returns the maximum of x[0..n).
VEC_T static INL float ACT_FN(vmax_of)(const float *x, int64_t n, int64_t *done) {
    VF vmax = VSET1(-INFINITY);
    int64_t i = 0;
    for (; i + VN <= n; i += VN) vmax = VMAX(vmax, VLOAD(x + i));
    float mx = VREDMAX(vmax);
    for (int64_t j = i; j < n; j++) mx = x[j] > mx ? x[j] : mx;
    *done = i;
    return mx;
}

VEC_T static float ACT_FN(softmax)(float *x, int64_t n, float scale) {
    int64_t i;
    float mx = ACT_FN(vmax_of)(x, n, &i);
    if (mx == -INFINITY) return -INFINITY;
    VF vm = VSET1(mx), vs = VZERO();
    for (i = 0; i + VN <= n; i += VN) {
        VF e = VEXP(VSUB(VLOAD(x + i), vm));
        VSTORE(x + i, e);
        vs = VADD(vs, e);
    }
    float s = VREDADD(vs);
    for (; i < n; i++) { x[i] = expf(x[i] - mx); s += x[i]; }
    VF inv = VSET1(scale / s);
    for (i = 0; i + VN <= n; i += VN) VSTORE(x + i, VMUL(VLOAD(x + i), inv));
    for (; i < n; i++) x[i] *= scale / s;
    return logf(s) + mx;
}

VEC_T static float ACT_FN(lse)(const float *x, int64_t n) {
    int64_t i;
    float mx = ACT_FN(vmax_of)(x, n, &i);
    if (mx == -INFINITY) return -INFINITY;
    VF vm = VSET1(mx), vs = VZERO();
    for (i = 0; i + VN <= n; i += VN) vs = VADD(vs, VEXP(VSUB(VLOAD(x + i), vm)));
    float s = VREDADD(vs);
    for (; i < n; i++) s += expf(x[i] - mx);
    return logf(s) + mx;
}

VEC_T static void ACT_FN(silu_mul)(const float *g, const float *u, float *out, int64_t n) {
    int64_t i = 0;
    const VF one = VSET1(1.0f);
    for (; i + VN <= n; i += VN) {
        VF gv = VLOAD(g + i);
        VF s = VDIV(gv, VADD(one, VEXP(VSUB(VZERO(), gv))));
        VSTORE(out + i, VMUL(s, VLOAD(u + i)));
    }
    for (; i < n; i++) out[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

// dg = da s u (1 + g (1 - s)), du = da s g with s = sigmoid(g) and da read from dg.
VEC_T static void ACT_FN(silu_mul_backward)(const float *g, const float *u, float *dg, float *du, int64_t n) {
    int64_t i = 0;
    const VF one = VSET1(1.0f);
    for (; i + VN <= n; i += VN) {
        VF gv = VLOAD(g + i), da = VLOAD(dg + i);
        VF s = VDIV(one, VADD(one, VEXP(VSUB(VZERO(), gv))));
        VF das = VMUL(da, s);
        VSTORE(du + i, VMUL(das, gv));
        VF f = VFMA(gv, VSUB(one, s), one);
        VSTORE(dg + i, VMUL(VMUL(das, VLOAD(u + i)), f));
    }
    for (; i < n; i++) {
        float gi = g[i], s = 1.0f / (1.0f + expf(-gi)), da = dg[i];
        du[i] = da * gi * s;
        dg[i] = da * u[i] * s * (1.0f + gi * (1.0f - s));
    }
}

#undef ACT_FN
#undef VEXP
#undef VSCALE2N
#undef EXP_LO
#include "sq_vec_undef.h"
