// Include before a vector include template (activation_kernels.h, dense_vec.h): the AVX-512 float
// vector operations under the names the templates use. sq_vec_undef.h (included by each template at
// its end) undefines them.
#define VEC_ISA avx512
#define VEC_T T_AVX512
#define VF __m512
#define VN 16
#define VLOAD(p) _mm512_loadu_ps(p)
#define VSTORE(p, v) _mm512_storeu_ps(p, v)
#define VSET1(s) _mm512_set1_ps(s)
#define VZERO() _mm512_setzero_ps()
#define VADD _mm512_add_ps
#define VSUB _mm512_sub_ps
#define VMUL _mm512_mul_ps
#define VDIV _mm512_div_ps
#define VMAX _mm512_max_ps
#define VMIN _mm512_min_ps
#define VFMA _mm512_fmadd_ps
#define VFNMA _mm512_fnmadd_ps
#define VROUND(v) _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define VREDADD(v) _mm512_reduce_add_ps(v)
#define VREDMAX(v) _mm512_reduce_max_ps(v)
