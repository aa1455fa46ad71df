import CSqueezeKernels
import SqueezeCore

/// A sparse matrix S [rows, columns] in CSR form (row pointers int32 [rows + 1], column indices
/// int32 [nnz], float values [nnz]), added to a dense product: y += S x.
///
/// Products walk the nonzeros of whole rows with each one's row index (kept beside the CSR arrays),
/// so that rows of a few nonzeros cost no branch each. Spread over threads, the rows are cut where
/// the nonzeros divide evenly (SqueezeLLM's balanced kernel), snapped to row starts so no two threads
/// write one output. Safe to use from several threads at once (scratch is per thread).
public final class SparseCSRMatrix: @unchecked Sendable {
    /// Number of rows.
    public let rows: Int
    /// Number of columns.
    public let columns: Int
    /// Number of nonzeros.
    public let nonzeroCount: Int
    let rowPtr: AlignedBuffer<Int32>
    let cols: AlignedBuffer<Int32>
    let vals: AlignedBuffer<Float>
    /// The row of each nonzero (invariant: rowPtr[rowIdx[p]] <= p < rowPtr[rowIdx[p] + 1]).
    let rowIdx: AlignedBuffer<Int32>

    /// Below this many nonzeros per token, products run on one thread.
    public static var parallelThreshold = 16384

    /// Builds and validates the matrix (row pointers non-decreasing from 0 to nnz, columns in range).
    public init(rows: Int, columns: Int, rowPointers: [Int32], columnIndices: [Int32], values: [Float]) throws {
        guard rows > 0, columns > 0 else {
            throw LUTError.badSparse("dimensions [\(rows), \(columns)] must be positive")
        }
        guard rowPointers.count == rows + 1 else {
            throw LUTError.badCount(what: "CSR row pointers", expected: rows + 1, got: rowPointers.count)
        }
        guard columnIndices.count == values.count else {
            throw LUTError.badCount(what: "CSR values", expected: columnIndices.count, got: values.count)
        }
        guard rowPointers[0] == 0, Int(rowPointers[rows]) == values.count else {
            throw LUTError.badSparse("row pointers must start at 0 and end at nnz = \(values.count)")
        }
        for r in 0..<rows where rowPointers[r] > rowPointers[r + 1] {
            throw LUTError.badSparse("row pointers decrease at row \(r)")
        }
        for (p, c) in columnIndices.enumerated() where c < 0 || Int(c) >= columns {
            throw LUTError.badSparse("column index \(c) at nonzero \(p) is outside 0..<\(columns)")
        }
        self.rows = rows
        self.columns = columns
        nonzeroCount = values.count
        rowPtr = AlignedBuffer(rowPointers)
        cols = AlignedBuffer(columnIndices)
        vals = AlignedBuffer(values)
        rowIdx = AlignedBuffer(count: max(values.count, 1))
        sq_csr_fill_row_index(rowPtr.pointer, Int64(rows), rowIdx.pointer)
    }

    /// Builds the matrix from (row, column, value) triples, in any order; duplicates are summed.
    public convenience init(rows: Int, columns: Int, entries: [(row: Int, column: Int, value: Float)]) throws {
        var counts = [Int32](repeating: 0, count: rows + 1)
        for e in entries {
            guard e.row >= 0, e.row < rows, e.column >= 0, e.column < columns else {
                throw LUTError.badSparse("entry (\(e.row), \(e.column)) outside [\(rows), \(columns)]")
            }
        }
        let sorted = entries.sorted { ($0.row, $0.column) < ($1.row, $1.column) }
        var ci = [Int32](), vs = [Float]()
        ci.reserveCapacity(sorted.count)
        vs.reserveCapacity(sorted.count)
        var last: (Int, Int)? = nil
        for e in sorted {
            if let l = last, l == (e.row, e.column) { vs[vs.count - 1] += e.value; continue }
            ci.append(Int32(e.column))
            vs.append(e.value)
            counts[e.row + 1] += 1
            last = (e.row, e.column)
        }
        for r in 0..<rows { counts[r + 1] += counts[r] }
        try self.init(rows: rows, columns: columns, rowPointers: counts, columnIndices: ci, values: vs)
    }

    /// Bytes held and read per product: the CSR arrays plus the row index of each nonzero.
    public var byteCount: Int { rowPtr.count * 4 + cols.count * 4 + vals.count * 4 + nonzeroCount * 4 }

    /// The CSR arrays, copied.
    public var csr: (rowPointers: [Int32], columnIndices: [Int32], values: [Float]) {
        (rowPtr.toArray(), cols.toArray(), vals.toArray())
    }

    /// Y[t * ldy + r] += sum_c S[r, c] X[t * ldx + c] for rows r in `rows` only, on the calling thread
    /// (for callers that already split rows over threads, such as a fused dense-and-sparse product).
    public func addMultiply(rows range: Range<Int>, _ x: UnsafePointer<Float>, ldx: Int, m: Int,
                            _ y: UnsafeMutablePointer<Float>, ldy: Int) {
        precondition(range.lowerBound >= 0 && range.upperBound <= rows)
        sq_csr_spmm_range(rowPtr.pointer, rowIdx.pointer, cols.pointer, vals.pointer, Int64(columns), x, Int64(ldx),
                          Int64(m), y, Int64(ldy), Int64(range.lowerBound), Int64(range.upperBound))
    }

    /// y += S x, spread over `threads` threads of `pool`.
    public func addMultiply(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, pool: WorkerPool = .shared,
                            threads: Int? = nil) {
        addMultiply(x, ldx: columns, m: 1, y, ldy: rows, pool: pool, threads: threads)
    }

    /// Y[t * ldy + r] += sum_c S[r, c] X[t * ldx + c] for tokens t in 0..<m.
    public func addMultiply(_ x: UnsafePointer<Float>, ldx: Int, m: Int, _ y: UnsafeMutablePointer<Float>, ldy: Int,
                            pool: WorkerPool = .shared, threads: Int? = nil) {
        let nnz = nonzeroCount
        if nnz == 0 || m <= 0 { return }
        var parts = min(threads ?? pool.defaultThreads, pool.threadCount)
        if nnz * m < SparseCSRMatrix.parallelThreshold { parts = 1 }
        if parts <= 1 {
            addMultiply(rows: 0..<rows, x, ldx: ldx, m: m, y, ldy: ldy)
            return
        }
        // Part i starts at the row holding nonzero nnz * i / parts (a row is never split).
        let rp = rowPtr.pointer, nrows = Int64(rows)
        withUnsafeTemporaryAllocation(of: Int.self, capacity: parts + 1) { bounds in
            let bd = bounds.baseAddress!
            bd[0] = 0
            bd[parts] = rows
            for i in 1..<parts { bd[i] = max(bd[i - 1], Int(sq_csr_row_of(rp, nrows, Int64(nnz * i / parts)))) }
            pool.run(tasks: parts, threads: parts) { i, _ in
                if bd[i + 1] > bd[i] { self.addMultiply(rows: bd[i]..<bd[i + 1], x, ldx: ldx, m: m, y, ldy: ldy) }
            }
        }
    }
}
