#ifndef SQ_SPARSE_H
#define SQ_SPARSE_H
#include <stdint.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

// Sparse matrices added to a dense result: y += S x.
//
// Storage: sliced ELLPACK with rows sorted inside windows (SELL-8-sigma). Rows are taken in windows
// of `window` consecutive rows; each row's nonzeros are cut into *chunks* of at most SQ_SELL_CHUNK
// consecutive ones; inside a window the chunks are sorted by their count (longest first, then by row,
// then by position in the row) and dealt into *slices* of 8 lanes, one chunk per lane. A slice of L
// levels holds L x 8 slots, level-major: slot (level j, lane l) is the j-th nonzero of lane l's chunk,
// or padding (column 0, value 0) when the chunk is shorter. One slice is then 8 independent sums
// computed together (8 column loads, one 8-wide multiply-add per level) and added to their rows at the
// end. SqueezeLLM's outliers have 0 to over 100 nonzeros per row; sorting keeps the padding small and
// chunking keeps a long row from padding its slice (docs/sparse-layout.md).
//
// Every row's sum is formed the same way whatever the number of tokens or the row range asked for:
// for each of its chunks in layout order, acc = 0, then acc = fma(value_j, x[col_j], acc) for j = 0,
// 1, ... (padding adds fma(0, x[0], acc) = acc), then y[row] += acc. So products over any row ranges
// and any token counts give bit-identical results per row and token, on every ISA level (the portable
// path uses fmaf). A range that cuts a window computes that window's slices and writes only the rows
// inside the range.
//
// A compact matrix (rows and columns at most 65536, values exact in IEEE half precision, as they are
// when read from a checkpoint that stores them in F16) keeps columns as uint16 and values as half bits
// (4 bytes per slot), otherwise int32 and float (8 bytes per slot).

/// Lanes per slice.
#define SQ_SELL_LANES 8
/// Largest window (rows sorted together); lane rows are stored as uint16 offsets in the window.
#define SQ_SELL_MAX_WINDOW 256
/// Most nonzeros of one row in one lane.
#define SQ_SELL_CHUNK 8
/// Marks a lane with no row.
#define SQ_SELL_EMPTY 0xFFFF

/// A sparse matrix in sliced ELL form (see above). `cols` is uint16 and `vals` half bits when
/// `compact` is nonzero, otherwise int32 and float.
typedef struct {
    const int32_t *rowptr;         ///< CSR row pointers [rows + 1] (row order): row r has rowptr[r+1]-rowptr[r] nonzeros
    const int32_t *window_slices;  ///< [windows + 1]: the slices of window w are window_slices[w]..<window_slices[w+1]
    const int32_t *slice_levels;   ///< [slices + 1]: slice s occupies levels slice_levels[s]..<slice_levels[s+1]
    const uint16_t *lane_rows;     ///< [slices * 8]: row of each lane minus its window's first row, or SQ_SELL_EMPTY
    const uint8_t *lane_counts;    ///< [slices * 8]: nonzeros of each lane's chunk (0 for an empty lane)
    const void *cols;              ///< [levels * 8] column of each slot
    const void *vals;              ///< [levels * 8] value of each slot
    int64_t rows;
    int64_t columns;
    int64_t window;                ///< rows per window, a multiple of 8 in 8..SQ_SELL_MAX_WINDOW
    int32_t compact;
} sq_csr;

/// The row that holds nonzero p (rowptr[r] <= p < rowptr[r + 1]); rows with no nonzeros are skipped.
int64_t sq_csr_row_of(const int32_t *rowptr, int64_t rows, int64_t p);

/// The window for a matrix of `rows` rows: the largest multiple of 8 up to SQ_SELL_MAX_WINDOW that
/// divides ceil(rows / 2) (so that two threads splitting the rows in halves cut no window), or 128
/// when that is below 64.
int64_t sq_sell_window(int64_t rows);

/// Sizes of the sliced layout of `rowptr` with `window`: writes the number of slices and of levels.
/// Returns 0 when out of memory (for sorting), else 1.
int sq_sell_plan(const int32_t *rowptr, int64_t rows, int64_t window, int64_t *slices, int64_t *levels);

/// Fills the layout planned by sq_sell_plan: window_slices [windows + 1] (windows = ceil(rows / window)),
/// slice_levels [slices + 1], lane_rows and lane_counts [slices * 8], and source [levels * 8]: the CSR
/// position (row order) whose column and value go in each slot, or -1 for padding. Returns 0 when out
/// of memory, else 1.
int sq_sell_build(const int32_t *rowptr, int64_t rows, int64_t window, int32_t *window_slices,
                  int32_t *slice_levels, uint16_t *lane_rows, uint8_t *lane_counts, int32_t *source);

/// Y[t * ldy + r] += sum over row r of S X[t] (X[t] = x + t * ldx, `columns` values), for rows
/// [r0, r1) and tokens [0, m). See above for the order of the sums.
void sq_csr_spmm_range(const sq_csr *s, const float *x, int64_t ldx, int64_t m, float *y, int64_t ldy, int64_t r0,
                       int64_t r1);

/// dst[(r - r0) * ld + c] += S[r, c] for every nonzero of rows [r0, r1) (adds the sparse part to
/// dense rows decoded into dst).
void sq_csr_add_to_rows(const sq_csr *s, int64_t r0, int64_t r1, float *dst, int64_t ld);

#ifdef __cplusplus
}
#endif
#endif
