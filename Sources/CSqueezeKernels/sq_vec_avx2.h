// Include before a vector include template (activation_kernels.h, dense_vec.h): the AVX2 float vector
// operations under the names the templates use. sq_vec_undef.h (included by each template at its end)
// undefines them.
#define VEC_ISA avx2
#define VEC_T T_AVX2
#define VF __m256
#define VN 8
#define VLOAD(p) _mm256_loadu_ps(p)
#define VSTORE(p, v) _mm256_storeu_ps(p, v)
#define VSET1(s) _mm256_set1_ps(s)
#define VZERO() _mm256_setzero_ps()
#define VADD _mm256_add_ps
#define VSUB _mm256_sub_ps
#define VMUL _mm256_mul_ps
#define VDIV _mm256_div_ps
#define VMAX _mm256_max_ps
#define VMIN _mm256_min_ps
#define VFMA _mm256_fmadd_ps
#define VFNMA _mm256_fnmadd_ps
#define VROUND(v) _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define VREDADD(v) sq_hsum8(v)
#define VREDMAX(v) sq_hmax8(v)
