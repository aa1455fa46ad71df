// Include before a vector include template (activation_kernels.h, dense_vec.h): the ARM64 NEON float
// vector operations under the names the templates use (VFMA(a, b, c) = a * b + c, fused, as on x86).
// sq_vec_undef.h (included by each template at its end) undefines them.
#define VEC_ISA neon
#define VEC_T T_NEON
#define VF float32x4_t
#define VN 4
#define VLOAD(p) vld1q_f32(p)
#define VSTORE(p, v) vst1q_f32(p, v)
#define VSET1(s) vdupq_n_f32(s)
#define VZERO() vdupq_n_f32(0)
#define VADD vaddq_f32
#define VSUB vsubq_f32
#define VMUL vmulq_f32
#define VDIV vdivq_f32
#define VMAX vmaxq_f32
#define VMIN vminq_f32
#define VFMA(a, b, c) vfmaq_f32(c, a, b)
#define VFNMA(a, b, c) vfmsq_f32(c, a, b)
#define VROUND(v) vrndnq_f32(v)
#define VREDADD(v) vaddvq_f32(v)
#define VREDMAX(v) vmaxvq_f32(v)
