// Sparse product orderings, timed with dense weights streamed between products as in decoding.
// Build: clang -O2 scripts/harness/sparse_order_harness.c -o /tmp/sparse_order && /tmp/sparse_order 1536 576 200 256
// Arguments: rows, columns, matrices (about 3 nonzeros per row, 0-6 at random), KiB of dense weights read
// before each matrix (0: none). Prints ns per nonzero for: CSR row order with int32 indices and F32
// values ("flat"), group order (rows interleaved in groups of 32) with the same types ("interleaved"),
// blocks of 8 (row, column, half value) records in group order ("blocked"), and group order with
// uint16 indices and half values, converted 8 at a time ("flat16", the layout of sq_sparse.h until e945286;
// the sliced layout that replaced it is timed by scripts/harness/sparse_layout/run.sh); the
// "minus stream" line subtracts the time of the dense reads alone.
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <time.h>
#include <immintrin.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
__attribute__((noinline)) void flat(const int32_t*ri,const int32_t*c,const float*v,const float*x,float*y,int64_t n){for(int64_t p=0;p<n;p++)y[ri[p]]+=v[p]*x[c[p]];}
__attribute__((noinline,target("avx2,fma,f16c"))) void flat16(const uint16_t*ri,const uint16_t*c,const uint16_t*v,const float*x,float*y,int64_t n){for(int64_t p=0;p<n;p++)y[ri[p]]+=_cvtsh_ss(v[p])*x[c[p]];}
__attribute__((noinline,target("avx2,fma,f16c"))) void f16b(const uint16_t*ri,const uint16_t*c,const uint16_t*v,const float*x,float*y,int64_t n){
 int64_t p=0; float t[8];
 for(;p+8<=n;p+=8){ _mm256_storeu_ps(t,_mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(v+p))));
   for(int k=0;k<8;k++){float pr=t[k]*x[c[p+k]]; y[ri[p+k]]+=pr;} }
 for(;p<n;p++){float pr=_cvtsh_ss(v[p])*x[c[p]]; y[ri[p]]+=pr;}}
__attribute__((noinline,target("avx2,fma,f16c"))) void f16p(const uint32_t*rc,const uint16_t*v,const float*x,float*y,int64_t n){
 int64_t p=0; float t[8];
 for(;p+8<=n;p+=8){ _mm256_storeu_ps(t,_mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(v+p))));
   for(int k=0;k<8;k++){uint32_t w=rc[p+k]; float pr=t[k]*x[w&0xffff]; y[w>>16]+=pr;} }
 for(;p<n;p++){uint32_t w=rc[p];float pr=_cvtsh_ss(v[p])*x[w&0xffff]; y[w>>16]+=pr;}}
__attribute__((noinline,target("avx2,fma,f16c"))) void blk(const uint16_t*b,const float*x,float*y,int64_t n){
 int64_t p=0; float t[8];
 for(;p+8<=n;p+=8){ const uint16_t*q=b+(p/8)*24; _mm256_storeu_ps(t,_mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(q+16))));
   for(int k=0;k<8;k++){float pr=t[k]*x[q[8+k]]; y[q[k]]+=pr;} }
 for(;p<n;p++){const uint16_t*q=b+(p/8)*24+p%8; float pr=_cvtsh_ss(q[16])*x[q[8]]; y[q[0]]+=pr;}}
// register accumulation with branchless flush: acc carried while row same
__attribute__((noinline)) void regacc(const int32_t*ri,const int32_t*c,const float*v,const float*x,float*y,int64_t n){
  if(!n)return; int32_t r=ri[0]; float acc=0;
  for(int64_t p=0;p<n;p++){int32_t rr=ri[p]; if(rr!=r){y[r]+=acc;acc=0;r=rr;} acc+=v[p]*x[c[p]];}
  y[r]+=acc;}
__attribute__((target("f16c"))) int main(int argc,char**argv){
  int rows=atoi(argv[1]), cols=atoi(argv[2]); int mats=atoi(argv[3]); double per=3.0;
  int64_t nnz=(int64_t)(rows*per);
  // build mats matrices each rows x cols with ~3 nnz/row random counts
  int32_t **ri=malloc(mats*sizeof*ri),**ci=malloc(mats*sizeof*ci),**ri2=malloc(mats*sizeof*ri2),**ci2=malloc(mats*sizeof*ci2); float**vv=malloc(mats*sizeof*vv),**vv2=malloc(mats*sizeof*vv2);
  uint32_t **rc=malloc(mats*sizeof*rc); uint16_t **bk=malloc(mats*sizeof*bk); uint16_t **r16=malloc(mats*sizeof*r16),**c16=malloc(mats*sizeof*c16),**v16=malloc(mats*sizeof*v16);
  int64_t *nn=malloc(mats*8);
  for(int m=0;m<mats;m++){int32_t*R=malloc(nnz*2*4),*C=malloc(nnz*2*4);float*V=malloc(nnz*2*4);int64_t k=0;
    int cnt[100000];int maxc=0;
    for(int r=0;r<rows;r++){int c=rand()%7; cnt[r]=c; if(c>maxc)maxc=c; for(int j=0;j<c;j++){R[k]=r;C[k]=rand()%cols;V[k]=(rand()%100)/50.0f;k++;}}
    nn[m]=k;ri[m]=R;ci[m]=C;vv[m]=V;
    // interleaved order: by (j, row) within groups of 64 rows
    int32_t*R2=malloc(k*4),*C2=malloc(k*4);float*V2=malloc(k*4);int64_t q=0;int64_t base=0;
    int64_t *start=malloc((rows+1)*8); start[0]=0; for(int r=0;r<rows;r++)start[r+1]=start[r]+cnt[r];
    for(int g=0;g<rows;g+=32){int ge=g+32<rows?g+32:rows; for(int j=0;j<maxc;j++)for(int r=g;r<ge;r++)if(j<cnt[r]){int64_t s=start[r]+j;R2[q]=R[s];C2[q]=C[s];V2[q]=V[s];q++;}}
    ri2[m]=R2;ci2[m]=C2;vv2[m]=V2;
    rc[m]=malloc(k*4);for(int64_t p=0;p<k;p++)rc[m][p]=((uint32_t)R2[p]<<16)|C2[p]; bk[m]=calloc((k/8+1)*24,2);for(int64_t p=0;p<k;p++){uint16_t*q=bk[m]+(p/8)*24+p%8;q[0]=R2[p];q[8]=C2[p];q[16]=_cvtss_sh(V2[p],0);} r16[m]=malloc(k*2);c16[m]=malloc(k*2);v16[m]=malloc(k*2);for(int64_t p=0;p<k;p++){r16[m][p]=R2[p];c16[m][p]=C2[p];v16[m][p]=_cvtss_sh(V2[p],0);}
  }
  float*x=malloc(cols*4),*y=calloc(rows,4);for(int i=0;i<cols;i++)x[i]=1;
  size_t BIG=(size_t)96<<20; float*big=malloc(BIG);for(size_t i=0;i<BIG/4;i++)big[i]=1; size_t off=0; size_t chunk=(size_t)atoi(argv[4])<<10; volatile float sink=0;
#define STREAM do{float s0=0,s1=0,s2=0,s3=0;const float*b=big+off/4;for(size_t i=0;i<chunk/4;i+=16){s0+=b[i];s1+=b[i+4];s2+=b[i+8];s3+=b[i+12];}sink=s0+s1+s2+s3;off+=chunk;if(off+chunk>BIG)off=0;}while(0)
int64_t tot=0;for(int m=0;m<mats;m++)tot+=nn[m];
  for(int rep=0;rep<3;rep++){
  double t0=now();for(int it=0;it<20;it++)for(int m=0;m<mats;m++){STREAM;flat(ri[m],ci[m],vv[m],x,y,nn[m]);}double t1=now();
  for(int it=0;it<20;it++)for(int m=0;m<mats;m++){STREAM;flat(ri2[m],ci2[m],vv2[m],x,y,nn[m]);}double t2=now();
  for(int it=0;it<20;it++)for(int m=0;m<mats;m++){STREAM;blk(bk[m],x,y,nn[m]);}double t3=now();
  for(int it=0;it<20;it++)for(int m=0;m<mats;m++){STREAM;f16b(r16[m],c16[m],v16[m],x,y,nn[m]);}double t4=now();for(int it=0;it<20;it++)for(int m=0;m<mats;m++){STREAM;}double t5=now();
  printf("nnz %ld: flat %.2f ns/nnz, interleaved %.2f, blocked %.2f, flat16 %.2f\n",(long)tot,(t1-t0)/20/tot*1e9,(t2-t1)/20/tot*1e9,(t3-t2)/20/tot*1e9,(t4-t3)/20/tot*1e9);printf("  minus stream: flat %.2f inter %.2f blocked %.2f flat16 %.2f\n",(t1-t0-(t5-t4))/20/tot*1e9,(t2-t1-(t5-t4))/20/tot*1e9,(t3-t2-(t5-t4))/20/tot*1e9,(t4-t3-(t5-t4))/20/tot*1e9);}
}
