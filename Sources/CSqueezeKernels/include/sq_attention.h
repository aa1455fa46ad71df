#ifndef SQ_ATTENTION_H
#define SQ_ATTENTION_H
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Decode attention over a half-precision KV cache, for the query heads that share one KV head
// (grouped-query attention): each key and value is read and converted once for all of them.
//
// Key tiles: one KV head's keys are stored in tiles of SQ_KT positions, each tile dimension-major:
// key j, dimension d at kt[((j / SQ_KT) * hd + d) * SQ_KT + j % SQ_KT]. Eight adjacent keys of one
// dimension are one vector, so scores need no horizontal sums. Values are stored transposed
// (vt[d * ldv + j], one row per dimension).

#define SQ_KT 32

/// Scores of g query rows against keys [j0, j1) of one KV head in tiles (see above):
/// s[r * lds + (j - j0)] = sum_d q[r * ldq + d] * key_j[d] for r < g. Lanes of partial tiles outside
/// [j0, j1) are read (the tile's memory must exist) but never written.
void sq_attn_scores_kt16(const float *q, int64_t ldq, int64_t g, const uint16_t *kt, int64_t hd, int64_t j0,
                         int64_t j1, float *s, int64_t lds);

/// Weighted sums of values for g rows of probabilities: out[r * ldo + d] = sum_{j < n} p[r * ldp + j] *
/// vt[d * ldv + j] for r < g, d < hd.
void sq_attn_pv16(const float *p, int64_t ldp, int64_t g, const uint16_t *vt, int64_t ldv, int64_t hd, int64_t n,
                  float *out, int64_t ldo);

/// Keys [j0, j1) of one KV head in tiles, converted to F32 and laid out dimension-major:
/// dst[d * ldd + (j - j0)] (ldd >= j1 - j0), the B operand of a prefill score product.
void sq_attn_keys_kt16_to_f32(const uint16_t *kt, int64_t hd, int64_t j0, int64_t j1, float *dst, int64_t ldd);

/// Stores one key (hd floats) as position j of a tiled F16 key array (rounded to nearest even).
void sq_attn_store_key_kt16(const float *key, int64_t hd, int64_t j, uint16_t *kt);

// 8-bit caches: each key and each value vector (hd values of one KV head at one position) is stored
// as int8 with one F32 scale, x ~ scale * q, scale = max|x| / 127 (llama.cpp's q8_0 cache, with one
// block per head vector). Keys in the same tiles as above (int8 elements), key scales at ks[j]
// (ks holds whole tiles); values transposed (vt[d * ldv + j]), value scales at vs[j].

/// Quantizes one key (hd floats) into position j of an 8-bit key-tile array and its scale ks[j].
void sq_attn_store_key_kt8(const float *key, int64_t hd, int64_t j, int8_t *kt, float *ks);
/// Quantizes one value vector (hd floats) into column j of transposed 8-bit values and vs[j].
void sq_attn_store_value_q8(const float *value, int64_t hd, int64_t j, int8_t *vt, int64_t ldv, float *vs);

/// As sq_attn_scores_kt16 over 8-bit key tiles: s[r * lds + (j - j0)] = ks[j] * sum_d q[r * ldq + d] * kt_j[d].
void sq_attn_scores_kt8(const float *q, int64_t ldq, int64_t g, const int8_t *kt, const float *ks, int64_t hd,
                        int64_t j0, int64_t j1, float *s, int64_t lds);

/// As sq_attn_pv16 over 8-bit values: out[r * ldo + d] = sum_{j < n} p[r * ldp + j] * vs[j] * vt[d * ldv + j].
/// Scales p in place first (p[r * ldp + j] *= vs[j]).
void sq_attn_pv8(float *p, int64_t ldp, int64_t g, const int8_t *vt, int64_t ldv, const float *vs, int64_t hd,
                 int64_t n, float *out, int64_t ldo);

/// 8-bit keys [j0, j1) dequantized, dimension-major: dst[d * ldd + (j - j0)] = ks[j] * kt_j[d].
void sq_attn_keys_kt8_to_f32(const int8_t *kt, const float *ks, int64_t hd, int64_t j0, int64_t j1, float *dst,
                             int64_t ldd);
/// 8-bit values of positions [j0, j1) dequantized, one row per dimension: dst[d * ldd + (j - j0)] =
/// vs[j] * vt[d * ldv + j].
void sq_attn_values_q8_to_f32(const int8_t *vt, int64_t ldv, const float *vs, int64_t hd, int64_t j0, int64_t j1,
                              float *dst, int64_t ldd);

#ifdef __cplusplus
}
#endif
#endif
