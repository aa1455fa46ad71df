// Decode attention of one token over an F16 KV cache of the test model's shape (30 layers, 3 KV
// heads of 64, 9 query heads), timing scores (QK), softmax and weighted sum (PV) per token, with keys
// stored position-major [position, kvDim] or head-major [kvHeads, capacity, headDim] (the layout of
// KVCache). Caches of 2048 positions (47 MB in all) exceed L3, so keys come from memory as in decoding.
// Build: S=Sources/CSqueezeKernels; clang -O2 -I$S/include scripts/attention_layout_harness.c $S/*.c \
//          -o /tmp/attn -lpthread -lm && /tmp/attn 2048 0 && /tmp/attn 2048 1
#include "sq_dense.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(int argc,char**argv){
  int n=atoi(argv[1]); int headMajor=argc>2&&atoi(argv[2]); int L=30, KV=3, hd=64, kvd=KV*hd, cap=n+64, G=3;
  uint16_t **K=malloc(L*sizeof*K),**V=malloc(L*sizeof*V);
  for(int l=0;l<L;l++){K[l]=malloc((size_t)cap*kvd*2);V[l]=malloc((size_t)cap*kvd*2);for(size_t i=0;i<(size_t)cap*kvd;i++){K[l][i]=0x3c00;V[l][i]=0x3c00;}}
  float q[9*64], sc[3*4096], out[9*64]; for(int i=0;i<9*64;i++)q[i]=0.01f;
  for(int rep=0;rep<3;rep++){
    double tq=0,tp=0,ts=0;
    for(int l=0;l<L;l++) for(int h=0;h<9;h++){ int kvh=h/G;
      double t0=now();
      if (headMajor) sq_gemm_f16(q+h*64,64,K[l]+(size_t)kvh*hd*cap,hd,sc,n,1,hd,0,n);
      else sq_gemm_f16(q+h*64,64,K[l]+kvh*hd,kvd,sc,n,1,hd,0,n);
      double t1=now();
      sq_softmax_f32(sc,n); double t2=now();
      sq_gemm_f16(sc,n,V[l]+kvh*hd*cap,cap,out+h*64,64,1,n,0,hd); double t3=now();
      tq+=t1-t0; ts+=t2-t1; tp+=t3-t2; }
    printf("n %d, keys %s, per token: QK %.2f ms, softmax %.2f ms, PV %.2f ms\n",n,headMajor?"head-major":"position-major",tq*1e3,ts*1e3,tp*1e3);
  }
}
