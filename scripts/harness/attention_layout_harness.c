// Decode attention of one token over an F16 KV cache of the test model's shape (30 layers, 3 KV
// heads of 64, 9 query heads), timing scores (QK), softmax and weighted sum (PV) per token, for three
// layouts:
//   0: keys position-major [position, kvDim], one query head at a time (sq_gemm_f16);
//   1: keys head-major [kvHeads, capacity, headDim], one query head at a time (the layout before
//      key tiles);
//   2: keys in tiles of 32 positions, dimension-major within a tile, the three query heads of a KV
//      head at once (sq_attn_scores_kt16 / sq_attn_pv16: KVCache's F16 layout).
// Values are transposed [kvDim, capacity] in all three. With HOT=1 every layer reads layer 0's cache
// (it stays in cache: the kernels' compute cost); otherwise caches of 2048 positions (47 MB in all)
// exceed L3 and keys come from memory as in decoding.
// Build: S=Sources/CSqueezeKernels; clang -O2 -I$S/include scripts/harness/attention_layout_harness.c $S/*.c \
//          -o /tmp/attn -lpthread -lm && for m in 0 1 2; do /tmp/attn 2048 $m; done
#include "sq_attention.h"
#include "sq_dense.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(int argc,char**argv){
  int n=atoi(argv[1]); int layout=argc>2?atoi(argv[2]):2; int L=30, KV=3, hd=64, kvd=KV*hd, cap=(n+64+31)/32*32, G=3;
  int hot=getenv("HOT")!=NULL;
  uint16_t **K=malloc(L*sizeof*K),**V=malloc(L*sizeof*V);
  for(int l=0;l<L;l++){
    if(hot&&l>0){K[l]=K[0];V[l]=V[0];continue;}
    K[l]=malloc((size_t)cap*kvd*2);V[l]=malloc((size_t)cap*kvd*2);
    for(size_t i=0;i<(size_t)cap*kvd;i++){K[l][i]=sq_f32_to_f16_1((float)((i*37)%101)/101.0f-0.5f);V[l][i]=0x3c00;}}
  float q[9*64], sc[3*4096], out[9*64]; for(int i=0;i<9*64;i++)q[i]=0.01f;
  for(int rep=0;rep<5;rep++){
    double tq=0,tp=0,ts=0;
    for(int l=0;l<L;l++) {
      if (layout==2) for(int kvh=0;kvh<KV;kvh++){
        double t0=now();
        sq_attn_scores_kt16(q+kvh*G*hd,hd,G,K[l]+(size_t)kvh*hd*cap,hd,0,n,sc,n);
        double t1=now();
        for(int g=0;g<G;g++) sq_softmax_f32(sc+g*n,n);
        double t2=now();
        sq_attn_pv16(sc,n,G,V[l]+(size_t)kvh*hd*cap,cap,hd,n,out+kvh*G*hd,hd);
        double t3=now(); tq+=t1-t0; ts+=t2-t1; tp+=t3-t2;
      } else for(int h=0;h<9;h++){ int kvh=h/G;
        double t0=now();
        if (layout==1) sq_gemm_f16(q+h*64,64,K[l]+(size_t)kvh*hd*cap,hd,sc,n,1,hd,0,n);
        else sq_gemm_f16(q+h*64,64,K[l]+kvh*hd,kvd,sc,n,1,hd,0,n);
        double t1=now();
        sq_softmax_f32(sc,n); double t2=now();
        sq_gemm_f16(sc,n,V[l]+kvh*hd*cap,cap,out+h*64,64,1,n,0,hd); double t3=now();
        tq+=t1-t0; ts+=t2-t1; tp+=t3-t2; }
    }
    const char *names[]={"position-major","head-major","tiles, grouped heads"};
    printf("n %d, keys %s%s, per token: QK %.2f ms, softmax %.2f ms, PV %.2f ms\n",n,names[layout],hot?" (hot)":"",tq*1e3,ts*1e3,tp*1e3);
  }
}
