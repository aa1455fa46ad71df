#ifndef SQ_SPARSE_H
#define SQ_SPARSE_H
#include <stdint.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

// Sparse CSR matrices (row pointers int32 [rows + 1], column indices int32 [nnz], float values [nnz])
// added to a dense result: y += S x. Work is split by nonzeros: a part covers the nonzeros
// [p0, p1), which may start and end inside rows; the partial sums of its first and last rows go to
// `carry` and the caller adds them after the parallel section, so parts never write the same y.

/// The row that holds nonzero p (rowptr[r] <= p < rowptr[r + 1]); rows with no nonzeros are skipped.
int64_t sq_csr_row_of(const int32_t *rowptr, int64_t rows, int64_t p);

/// One part of y += S X for m tokens (x[t * ldx + col], y[t * ldy + row]): nonzeros [p0, p1), whose
/// first row is rf and last row rl. Rows strictly between rf and rl are added to y; the sums of row
/// rf go to carry[t] and those of row rl to carry[m + t] (zero when rl == rf).
void sq_csr_spmm_part(const int32_t *rowptr, const int32_t *cols, const float *vals, const float *x,
                      int64_t ldx, int64_t m, float *y, int64_t ldy, int64_t p0, int64_t p1, int64_t rf,
                      int64_t rl, float *carry);

/// y[r] += sum over row r of S x, for rows [r0, r1) (whole rows).
void sq_csr_spmv_rows(const int32_t *rowptr, const int32_t *cols, const float *vals, const float *x, float *y,
                      int64_t r0, int64_t r1);

/// Y[t * ldy + r] += sum over row r of S X[t], for rows [r0, r1) and tokens [0, m).
void sq_csr_spmm_rows(const int32_t *rowptr, const int32_t *cols, const float *vals, const float *x, int64_t ldx,
                      int64_t m, float *y, int64_t ldy, int64_t r0, int64_t r1);

#ifdef __cplusplus
}
#endif
#endif
