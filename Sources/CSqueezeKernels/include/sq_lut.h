#ifndef SQ_LUT_H
#define SQ_LUT_H
#include <stdint.h>
#include <stddef.h>
#include "sq_sparse.h"

#ifdef __cplusplus
extern "C" {
#endif

// Look-up-table (non-uniform) quantized matrices: W[r, i] = lut[r][idx[r, i]], idx of 3 or 4 bits.
//
// Packed layouts (one row after another, `sq_lut_row_bytes` bytes per row, input dimension padded
// with index 0 to `sq_lut_padded_cols`):
// - 4 bits, chunks of 64 weights in 32 bytes: byte j holds weight j in its low nibble and weight
//   32 + j in its high nibble.
// - 3 bits, chunks of 128 weights in 48 bytes. Index i is split into i >> 1 (2 bits) and i & 1.
//   Bytes 0..31: byte j holds (i >> 1) of weight 32s + j at bits 2s..2s+1 (s = 0..3).
//   Bytes 32..47: byte j (0..15) holds (i & 1) of weight 32s + j at bit s and of weight 32s + 16 + j
//   at bit 4 + s.
//
// Tables: float tables have a stride of 16 floats per row (3 bits use the first 8). The int8 path's
// tables have 16 bytes per row (3 bits: entries 8..15 unused) of unsigned 7-bit codes q (0..127)
// with a float scale and offset per row: lut ~ scale * q + offset. Seven bits keep the pairwise
// int16 sums of AVX2's vpmaddubsw exact (2 * 127 * 127 < 32768) against signed 8-bit activations, so
// no sign trick is needed; the scale and offset are searched per row (least squared error of the
// 2^bits entries; its cost in perplexity: docs/kernels.md).
//
// Activations for the int8 path are quantized in blocks of SQ_LUT_QBLOCK: xq = round(x / d) with
// d = max|x| / 127 per block. The padded tail must be zero. sx = sum_b d[b] * sum_{i in b} xq[i]
// (the activations' sum as quantized) carries the tables' offsets: y = scale * sum_b d[b] *
// sum_{i in b} q[idx_i] xq[i] + offset * sx.
//
// Kernels write y[r] for r in [r0, r1) (absolute row index; GEMM: y[t * ldy + r]).
// All pointers to packed weights, tables, x and xq should be 32-byte aligned for speed.

#define SQ_LUT_QBLOCK 64

/// Column padding multiple for `bits` (4: 64, 3: 128); returns 0 for unsupported bits.
int64_t sq_lut_col_multiple(int bits);
/// `cols` rounded up to the padding multiple.
int64_t sq_lut_padded_cols(int bits, int64_t cols);
/// Bytes of one packed row of `kpad` (padded) columns.
int64_t sq_lut_row_bytes(int bits, int64_t kpad);

/// Packs rows [r0, r1) of unpacked indices (one byte per weight, row stride `ldi`, `cols` used
/// columns, values < 2^bits) into `out` (row r at out + r * row_bytes). Padding gets index 0.
void sq_lut_pack(int bits, const uint8_t *idx, int64_t ldi, int64_t cols, int64_t kpad, uint8_t *out,
                 int64_t r0, int64_t r1);
/// Unpacks row `r` of a packed matrix into `cols` bytes.
void sq_lut_unpack_row(int bits, const uint8_t *packed, int64_t kpad, int64_t r, int64_t cols, uint8_t *out);
/// Decodes row `r` of a packed matrix to floats: out[i] = lut[r * 16 + idx[r, i]] for i < kpad (the
/// padding decodes as entry 0). AVX2 (vpermps look-ups), ARM64 NEON (tbl look-ups) or scalar, chosen
/// at run time.
void sq_lut_dequantize_row(int bits, const uint8_t *packed, const float *lut, int64_t kpad, int64_t r, float *out);

/// Quantizes rows [r0, r1) of per-row float tables (stride 16 floats, 2^bits used) to 7-bit codes
/// (stride 16 bytes) with lut[r][e] ~ scale[r] * qt[r][e] + offset[r]: among scales from
/// (max - min) / 127 to 1.5 times that and offsets that keep every code in 0..127, the pair with the
/// least squared error over the row's entries, refined by a least-squares fit of the codes. Every
/// entry is then within scale / 2 <= 0.75 (max - min) / 127 of its float value. A constant row gets
/// scale 0 and offset equal to its value.
void sq_lut_quantize_tables(int bits, const float *lut, int64_t r0, int64_t r1, uint8_t *qt, float *scale,
                            float *offset);

/// Quantizes x[0..k) (zero beyond, up to kpad, a multiple of SQ_LUT_QBLOCK) into xq (kpad bytes),
/// d (kpad / SQ_LUT_QBLOCK scales) and *sx = sum_b d[b] * sum_{i in b} xq[i].
void sq_lut_quantize_x(const float *x, int64_t k, int64_t kpad, int8_t *xq, float *d, float *sx);

/// sq_lut_quantize_x for tokens [0, m): task t quantizes token t (x + t * ldx into xq + t * kpad,
/// d + t * (kpad / SQ_LUT_QBLOCK), sx + t). For sq_pool_run; the job lives on the caller's stack.
typedef struct {
    const float *x;
    int64_t ldx;
    int64_t k;
    int64_t kpad;
    int8_t *xq;
    float *d;
    float *sx;
} sq_lut_quantize_job;
/// Task function for sq_pool_run over a sq_lut_quantize_job.
void sq_lut_quantize_task(void *job, int64_t task, int thread);

/// Exact float path: y[r] = sum_i lut[r][idx[r,i]] * x[i], x padded to kpad with zeros.
void sq_lut_gemv_f32(int bits, const uint8_t *w, const float *lut, const float *x, float *y, int64_t kpad,
                     int64_t r0, int64_t r1);
/// Float path for m tokens: y[t * ldy + r] = sum_i W[r,i] x[t * ldx + i] (x rows padded to kpad).
void sq_lut_gemm_f32(int bits, const uint8_t *w, const float *lut, const float *x, int64_t ldx, int64_t m,
                     float *y, int64_t ldy, int64_t kpad, int64_t r0, int64_t r1);

/// int8 path: y[r] = scale[r] * sum_b d[b] * sum_{i in b} qt[r][idx] * xq[i] + offset[r] * sx, with
/// xq, d and sx from sq_lut_quantize_x.
void sq_lut_gemv_i8(int bits, const uint8_t *w, const uint8_t *qt, const float *scale, const float *offset,
                    const int8_t *xq, const float *d, const float *sx, float *y, int64_t kpad, int64_t r0, int64_t r1);
/// int8 path for m tokens; token t's activations at xq + t * kpad, d + t * (kpad / SQ_LUT_QBLOCK),
/// sx + t.
void sq_lut_gemm_i8(int bits, const uint8_t *w, const uint8_t *qt, const float *scale, const float *offset,
                    const int8_t *xq, const float *d, const float *sx, int64_t m, float *y, int64_t ldy,
                    int64_t kpad, int64_t r0, int64_t r1);

/// One int8-path product (sq_lut_gemm_i8 on rows [0, rows), then the sparse part, if any, added
/// row block by row block) cut into tasks of `block` rows for sq_pool_run: task i covers rows
/// [i * block, min(rows, (i + 1) * block)). The job lives on the caller's stack, so dispatching a
/// product allocates nothing.
typedef struct {
    int bits;
    const uint8_t *w;
    const uint8_t *qt;
    const float *scale;
    const float *offset;
    const int8_t *xq;
    const float *d;
    const float *sx;
    int64_t m;
    float *y;
    int64_t ldy;
    int64_t kpad;
    const sq_csr *sparse; ///< added per row block (its F32 input is x, ldx), or NULL
    const float *x;
    int64_t ldx;
    int64_t rows;
    int64_t block;
} sq_lut_i8_job;

/// Task function for sq_pool_run over a sq_lut_i8_job.
void sq_lut_i8_task(void *job, int64_t task, int thread);

/// The variants the dispatcher picks at the current sq_isa(), e.g. "float avx2, int8 avx2".
/// Float: avx512 (AVX-512F/BW/VL/DQ), avx2, neon, scalar. int8: avx512vnni (also needs AVX-512 VNNI),
/// avx2, i8mm (two or more tokens; one token goes to dotprod), dotprod, neon, scalar.
const char *sq_lut_variant(void);

#ifdef __cplusplus
}
#endif
#endif
