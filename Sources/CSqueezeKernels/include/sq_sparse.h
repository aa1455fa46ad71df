#ifndef SQ_SPARSE_H
#define SQ_SPARSE_H
#include <stdint.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

// Sparse CSR matrices (row pointers int32 [rows + 1], column indices int32 [nnz], float values [nnz])
// added to a dense result: y += S x. Products take whole rows [r0, r1), so callers that split rows
// over threads never write the same y; they walk the nonzeros rowptr[r0]..<rowptr[r1] with each one's
// row index (`sq_csr_fill_row_index`), which avoids a branch per row.

/// The row that holds nonzero p (rowptr[r] <= p < rowptr[r + 1]); rows with no nonzeros are skipped.
int64_t sq_csr_row_of(const int32_t *rowptr, int64_t rows, int64_t p);

/// rowidx[p] = the row of nonzero p, for every nonzero (rowidx has rowptr[rows] entries).
void sq_csr_fill_row_index(const int32_t *rowptr, int64_t rows, int32_t *rowidx);

/// Y[t * ldy + r] += sum over row r of S X[t] (X[t] = x + t * ldx, `columns` values), for rows
/// [r0, r1) and tokens [0, m). Several tokens go in blocks of 8 through per-thread scratch.
void sq_csr_spmm_range(const int32_t *rowptr, const int32_t *rowidx, const int32_t *cols, const float *vals,
                       int64_t columns, const float *x, int64_t ldx, int64_t m, float *y, int64_t ldy, int64_t r0,
                       int64_t r1);

#ifdef __cplusplus
}
#endif
#endif
