#ifndef SQ_SPARSE_H
#define SQ_SPARSE_H
#include <stdint.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

// Sparse matrices added to a dense result: y += S x.
//
// Storage. The CSR row pointers (int32 [rows + 1]) say which nonzeros each row has; the nonzeros
// themselves are stored in *group order*: rows are taken in groups of SQ_CSR_GROUP, and within a
// group the first nonzero of every row comes first, then the second of every row, and so on
// (`sq_csr_group_order`). A group's nonzeros occupy the same positions rowptr[g0]..<rowptr[g1] as in
// plain CSR, but consecutive nonzeros belong to different rows, so the sums y[row] += v * x[col]
// do not wait on each other through memory (in row order, three nonzeros of one row formed a chain of
// store-to-load forwarding that cost about 7 cycles each). Every nonzero carries its row index, so
// products are flat loops with no branch per row.
//
// A compact matrix (rows and columns at most 65536, values exact in IEEE half precision, as they are
// when read from a checkpoint that stores them in F16) keeps row and column indices as uint16 and
// values as half bits: 6 bytes per nonzero instead of 12.
#define SQ_CSR_GROUP 32

/// A sparse matrix in group order. `rowidx`, `cols` are uint16 and `vals` half bits when `compact`
/// is nonzero, otherwise int32, int32 and float.
typedef struct {
    const int32_t *rowptr;
    const void *rowidx;
    const void *cols;
    const void *vals;
    int64_t rows;
    int64_t columns;
    int32_t compact;
} sq_csr;

/// The row that holds nonzero p (rowptr[r] <= p < rowptr[r + 1]); rows with no nonzeros are skipped.
int64_t sq_csr_row_of(const int32_t *rowptr, int64_t rows, int64_t p);

/// order[q] = the CSR position (row-major) of the q-th nonzero in group order, for all nnz.
void sq_csr_group_order(const int32_t *rowptr, int64_t rows, int32_t *order);

/// Y[t * ldy + r] += sum over row r of S X[t] (X[t] = x + t * ldx, `columns` values), for rows
/// [r0, r1) and tokens [0, m). Whole groups inside the range run as flat loops; the groups cut by r0
/// or r1 check each nonzero's row. Several tokens go in blocks of 8 through per-thread scratch.
void sq_csr_spmm_range(const sq_csr *s, const float *x, int64_t ldx, int64_t m, float *y, int64_t ldy, int64_t r0,
                       int64_t r1);

/// dst[(r - r0) * ld + c] += S[r, c] for every nonzero of rows [r0, r1) (adds the sparse part to
/// dense rows decoded into dst).
void sq_csr_add_to_rows(const sq_csr *s, int64_t r0, int64_t r1, float *dst, int64_t ld);

#ifdef __cplusplus
}
#endif
#endif
