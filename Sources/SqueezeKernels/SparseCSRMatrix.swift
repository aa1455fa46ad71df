import CSqueezeKernels
import SqueezeCore

/// A sparse matrix S [rows, columns] in CSR form (row pointers int32 [rows + 1], column indices
/// int32 [nnz], float values [nnz]), added to a dense product: y += S x.
///
/// Products walk the nonzeros of whole rows with each one's row index, so that rows of a few
/// nonzeros cost no branch each. The nonzeros are kept in group order (rows in groups of 32, the
/// first nonzero of each row of a group, then the second, ...; see `sq_sparse.h`), so that
/// neighbouring sums write different rows. When the rows and columns fit 16 bits and every value is
/// exact in half precision (as when read from a checkpoint that stores F16), the matrix is compact:
/// 6 bytes per nonzero instead of 12. Spread over threads, the rows are cut where the nonzeros divide
/// evenly (SqueezeLLM's balanced kernel), snapped to row starts so no two threads write one output.
/// Safe to use from several threads at once (scratch is per thread).
public final class SparseCSRMatrix: @unchecked Sendable {
    /// Number of rows.
    public let rows: Int
    /// Number of columns.
    public let columns: Int
    /// Number of nonzeros.
    public let nonzeroCount: Int
    /// Whether indices are stored as 16 bits and values as half precision.
    public let isCompact: Bool
    let rowPtr: AlignedBuffer<Int32>
    /// The nonzeros in group order: row index, column index and value of each (uint16, uint16 and half
    /// bits when compact, else int32, int32 and float), raw bytes.
    /// Invariant: group order's q-th nonzero lies in row r with rowPtr[r] <= q < rowPtr[r + 1] as a set.
    let rowIdx: AlignedBuffer<UInt8>
    let cols: AlignedBuffer<UInt8>
    let vals: AlignedBuffer<UInt8>
    private let descriptor: sq_csr

    /// Below this many nonzeros per token, products run on one thread.
    public static var parallelThreshold = 16384

    /// Builds and validates the matrix (row pointers non-decreasing from 0 to nnz, columns in range).
    /// `compact: false` keeps 32-bit indices and float values even when the compact form would be exact.
    public init(rows: Int, columns: Int, rowPointers: [Int32], columnIndices: [Int32], values: [Float],
                compact: Bool = true) throws {
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
        let nnz = values.count
        self.rows = rows
        self.columns = columns
        nonzeroCount = nnz
        let rp = AlignedBuffer(rowPointers)
        rowPtr = rp
        // Compact when asked for, when indices fit 16 bits and every value survives half precision exactly.
        isCompact = compact && rows <= 65536 && columns <= 65536
            && values.allSatisfy { sq_f16_to_f32_1(sq_f32_to_f16_1($0)).bitPattern == $0.bitPattern }
        let width = isCompact ? 2 : 4
        let ri0 = AlignedBuffer<UInt8>(count: max(nnz, 1) * width), ci0 = AlignedBuffer<UInt8>(count: max(nnz, 1) * width)
        let vi0 = AlignedBuffer<UInt8>(count: max(nnz, 1) * width)
        rowIdx = ri0
        cols = ci0
        vals = vi0
        if nnz > 0 {
            var order = [Int32](repeating: 0, count: nnz)
            var rowOf = [Int32](repeating: 0, count: nnz)
            for r in 0..<rows { for p in Int(rowPointers[r])..<Int(rowPointers[r + 1]) { rowOf[p] = Int32(r) } }
            order.withUnsafeMutableBufferPointer { sq_csr_group_order(rp.pointer, Int64(rows), $0.baseAddress!) }
            if isCompact {
                let ri = UnsafeMutableRawPointer(ri0.pointer).assumingMemoryBound(to: UInt16.self)
                let ci = UnsafeMutableRawPointer(ci0.pointer).assumingMemoryBound(to: UInt16.self)
                let vi = UnsafeMutableRawPointer(vi0.pointer).assumingMemoryBound(to: UInt16.self)
                for (q, p) in order.enumerated() {
                    ri[q] = UInt16(rowOf[Int(p)]); ci[q] = UInt16(columnIndices[Int(p)])
                    vi[q] = sq_f32_to_f16_1(values[Int(p)])
                }
            } else {
                let ri = UnsafeMutableRawPointer(ri0.pointer).assumingMemoryBound(to: Int32.self)
                let ci = UnsafeMutableRawPointer(ci0.pointer).assumingMemoryBound(to: Int32.self)
                let vi = UnsafeMutableRawPointer(vi0.pointer).assumingMemoryBound(to: Float.self)
                for (q, p) in order.enumerated() {
                    ri[q] = rowOf[Int(p)]; ci[q] = columnIndices[Int(p)]; vi[q] = values[Int(p)]
                }
            }
        }
        descriptor = sq_csr(rowptr: rp.pointer, rowidx: UnsafeRawPointer(ri0.pointer),
                            cols: UnsafeRawPointer(ci0.pointer), vals: UnsafeRawPointer(vi0.pointer),
                            rows: Int64(rows), columns: Int64(columns), compact: isCompact ? 1 : 0)
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

    /// Bytes held and read per product: the row pointers and, per nonzero, its row, column and value.
    public var byteCount: Int { rowPtr.count * 4 + nonzeroCount * (isCompact ? 6 : 12) }

    /// The CSR arrays in row order, copied.
    public var csr: (rowPointers: [Int32], columnIndices: [Int32], values: [Float]) {
        let rp = rowPtr.toArray()
        var ci = [Int32](repeating: 0, count: nonzeroCount), vs = [Float](repeating: 0, count: nonzeroCount)
        var next = rp  // next CSR position of each row; group order keeps each row's nonzeros in order
        for q in 0..<nonzeroCount {
            let r: Int, c: Int32, v: Float
            if isCompact {
                r = Int(UnsafeRawPointer(rowIdx.pointer).load(fromByteOffset: 2 * q, as: UInt16.self))
                c = Int32(UnsafeRawPointer(cols.pointer).load(fromByteOffset: 2 * q, as: UInt16.self))
                v = sq_f16_to_f32_1(UnsafeRawPointer(vals.pointer).load(fromByteOffset: 2 * q, as: UInt16.self))
            } else {
                r = Int(UnsafeRawPointer(rowIdx.pointer).load(fromByteOffset: 4 * q, as: Int32.self))
                c = UnsafeRawPointer(cols.pointer).load(fromByteOffset: 4 * q, as: Int32.self)
                v = UnsafeRawPointer(vals.pointer).load(fromByteOffset: 4 * q, as: Float.self)
            }
            let p = Int(next[r])
            next[r] += 1
            ci[p] = c
            vs[p] = v
        }
        return (rp, ci, vs)
    }

    /// Y[t * ldy + r] += sum_c S[r, c] X[t * ldx + c] for rows r in `rows` only, on the calling thread
    /// (for callers that already split rows over threads, such as a fused dense-and-sparse product).
    public func addMultiply(rows range: Range<Int>, _ x: UnsafePointer<Float>, ldx: Int, m: Int,
                            _ y: UnsafeMutablePointer<Float>, ldy: Int) {
        precondition(range.lowerBound >= 0 && range.upperBound <= rows)
        withUnsafePointer(to: descriptor) {
            sq_csr_spmm_range($0, x, Int64(ldx), Int64(m), y, Int64(ldy), Int64(range.lowerBound), Int64(range.upperBound))
        }
    }

    /// Calls `body` with the matrix's kernel descriptor (valid only during the call).
    func withDescriptor<R>(_ body: (UnsafePointer<sq_csr>) -> R) -> R {
        withUnsafePointer(to: descriptor, body)
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
