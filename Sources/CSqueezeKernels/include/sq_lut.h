#ifndef SQ_LUT_H
#define SQ_LUT_H
#include <stdint.h>
#include <stddef.h>

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
// Tables: float tables have a stride of 16 floats per row (3 bits use the first 8); int8 tables have
// 16 bytes per row (3 bits: entries 8..15 unused) and a float scale per row (lut ~ scale * q).
//
// Activations for the int8 path are quantized in blocks of SQ_LUT_QBLOCK: xq = round(x / d) with
// d = max|x| / 127 per block; xa = |xq|. The padded tail must be zero.
//
// Kernels write y[r] for r in [r0, r1) (absolute row index; GEMM: y[t * ldy + r]).
// All pointers to packed weights, tables, x, xq, xa should be 32-byte aligned for speed.

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

/// Quantizes per-row float tables (stride 16 floats, 2^bits used) to int8 (stride 16 bytes) with
/// scale[r] = max|lut[r]| / 127 (0 if the row is all zero).
void sq_lut_quantize_tables(int bits, const float *lut, int64_t rows, int8_t *qt, float *scale);

/// Quantizes x[0..k) (zero beyond, up to kpad, a multiple of SQ_LUT_QBLOCK) into xq, xa (kpad bytes)
/// and d (kpad / SQ_LUT_QBLOCK scales); if cx is not NULL, *cx = 128 * sum_b d[b] * sum_{i in b} xq[i]
/// (the correction the VNNI variant needs, as it multiplies by the table offset to unsigned).
void sq_lut_quantize_x(const float *x, int64_t k, int64_t kpad, int8_t *xq, uint8_t *xa, float *d, float *cx);

/// Exact float path: y[r] = sum_i lut[r][idx[r,i]] * x[i], x padded to kpad with zeros.
void sq_lut_gemv_f32(int bits, const uint8_t *w, const float *lut, const float *x, float *y, int64_t kpad,
                     int64_t r0, int64_t r1);
/// Float path for m tokens: y[t * ldy + r] = sum_i W[r,i] x[t * ldx + i] (x rows padded to kpad).
void sq_lut_gemm_f32(int bits, const uint8_t *w, const float *lut, const float *x, int64_t ldx, int64_t m,
                     float *y, int64_t ldy, int64_t kpad, int64_t r0, int64_t r1);

/// int8 path: y[r] = scale[r] * sum_b d[b] * sum_{i in b} qt[r][idx] * xq[i]. cx: the token's
/// correction from sq_lut_quantize_x (may be NULL: then the VNNI variant is not used).
void sq_lut_gemv_i8(int bits, const uint8_t *w, const int8_t *qt, const float *scale, const int8_t *xq,
                    const uint8_t *xa, const float *d, const float *cx, float *y, int64_t kpad, int64_t r0,
                    int64_t r1);
/// int8 path for m tokens; token t's activations at xq + t * kpad, xa + t * kpad,
/// d + t * (kpad / SQ_LUT_QBLOCK), cx + t.
void sq_lut_gemm_i8(int bits, const uint8_t *w, const int8_t *qt, const float *scale, const int8_t *xq,
                    const uint8_t *xa, const float *d, const float *cx, int64_t m, float *y, int64_t ldy,
                    int64_t kpad, int64_t r0, int64_t r1);

/// The variants the dispatcher picks at the current sq_isa(), e.g. "float avx2, int8 avx2".
/// Float: avx512 (AVX-512F/BW/VL/DQ), avx2, scalar. int8: avx512vnni (also needs AVX-512 VNNI),
/// avx2, scalar.
const char *sq_lut_variant(void);

#ifdef __cplusplus
}
#endif
#endif
