import CSqueezeKernels
import SqueezeCore

/// A sparse matrix S [rows, columns] built from CSR (row pointers int32 [rows + 1], column indices
/// int32 [nnz], float values [nnz]), added to a dense product: y += S x.
///
/// Stored as sliced ELL with rows sorted inside windows (see `sq_sparse.h`): in each window of rows,
/// the rows' nonzeros, cut into chunks of at most 8, are sorted by count and dealt into slices of 8,
/// each slice a block of levels x 8 (column, value) slots, so that one 8-wide multiply-add serves 8
/// chunks. Each row's sum is formed in the same order whatever the token count or row range, so
/// batched and single products agree bit for bit. When the rows and columns fit 16 bits and every value is exact in half
/// precision (as when read from a checkpoint that stores F16), the matrix is compact: 4 bytes per
/// slot instead of 8. Spread over threads, the rows are cut where the nonzeros divide evenly
/// (SqueezeLLM's balanced kernel), snapped to window starts so no two threads write one output.
/// Safe to use from several threads at once.
public final class SparseCSRMatrix: @unchecked Sendable {
    /// Number of rows.
    public let rows: Int
    /// Number of columns.
    public let columns: Int
    /// Number of nonzeros.
    public let nonzeroCount: Int
    /// Whether columns are stored as 16 bits and values as half precision.
    public let isCompact: Bool
    /// Rows sorted together (a window); the multiple of 8 chosen by `sq_sell_window`.
    public let window: Int
    /// Slots stored (nonzeros plus padding), a multiple of 8.
    public let slotCount: Int
    let rowPtr: AlignedBuffer<Int32>
    let windowSlices: AlignedBuffer<Int32>
    let sliceLevels: AlignedBuffer<Int32>
    let laneRows: AlignedBuffer<UInt16>
    let laneCounts: AlignedBuffer<UInt8>
    /// Column and value of each slot (uint16 and half bits when compact, else int32 and float), raw bytes.
    /// Invariant: the slot (level j, lane l) of a slice whose lane l holds a chunk of row r starting at
    /// its nonzero k is row r's nonzero k + j when j < laneCounts[lane], else column 0 and value 0; a
    /// row's chunks follow each other in layout order.
    let cols: AlignedBuffer<UInt8>
    let vals: AlignedBuffer<UInt8>
    private let descriptor: sq_csr

    /// Below this many nonzeros per token, products run on one thread.
    public static var parallelThreshold = 16384

    /// Builds and validates the matrix (row pointers non-decreasing from 0 to nnz, columns in range).
    /// `compact: false` keeps 32-bit columns and float values even when the compact form would be exact.
    public init(
        rows: Int, columns: Int, rowPointers: [Int32], columnIndices: [Int32], values: [Float],
        compact: Bool = true
    ) throws {
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
        let rp = AlignedBuffer(rowPointers)
        rowPtr = rp
        // Compact when asked for, when indices fit 16 bits and every value survives half precision exactly.
        isCompact =
            compact && rows <= 65536 && columns <= 65536
            && values.allSatisfy { sq_f16_to_f32_1(sq_f32_to_f16_1($0)).bitPattern == $0.bitPattern }
        let w = Int(sq_sell_window(Int64(rows)))
        window = w
        var ns: Int64 = 0, nl: Int64 = 0
        guard sq_sell_plan(rp.pointer, Int64(rows), Int64(w), &ns, &nl) != 0 else {
            throw LUTError.badSparse("out of memory sorting the nonzeros of [\(rows), \(columns)]")
        }
        let windows = (rows + w - 1) / w, slots = Int(nl) * 8
        slotCount = slots
        let ws = AlignedBuffer<Int32>(count: windows + 1), sls = AlignedBuffer<Int32>(count: Int(ns) + 1)
        let lr = AlignedBuffer<UInt16>(count: max(Int(ns) * 8, 1)),
            lc = AlignedBuffer<UInt8>(count: max(Int(ns) * 8, 1))
        var source = [Int32](repeating: -1, count: max(slots, 1))
        let built = source.withUnsafeMutableBufferPointer {
            sq_sell_build(
                rp.pointer, Int64(rows), Int64(w), ws.pointer, sls.pointer, lr.pointer, lc.pointer, $0.baseAddress!)
        }
        guard built != 0 else {
            throw LUTError.badSparse("out of memory sorting the nonzeros of [\(rows), \(columns)]")
        }
        windowSlices = ws
        sliceLevels = sls
        laneRows = lr
        laneCounts = lc
        let width = isCompact ? 2 : 4
        let c0 = AlignedBuffer<UInt8>(count: max(slots, 8) * width),
            v0 = AlignedBuffer<UInt8>(count: max(slots, 8) * width)
        cols = c0
        vals = v0
        if isCompact {
            let ci = UnsafeMutableRawPointer(c0.pointer).assumingMemoryBound(to: UInt16.self)
            let vi = UnsafeMutableRawPointer(v0.pointer).assumingMemoryBound(to: UInt16.self)
            for q in 0..<slots {
                let p = Int(source[q])
                ci[q] = p < 0 ? 0 : UInt16(columnIndices[p])
                vi[q] = p < 0 ? 0 : sq_f32_to_f16_1(values[p])
            }
        } else {
            let ci = UnsafeMutableRawPointer(c0.pointer).assumingMemoryBound(to: Int32.self)
            let vi = UnsafeMutableRawPointer(v0.pointer).assumingMemoryBound(to: Float.self)
            for q in 0..<slots {
                let p = Int(source[q])
                ci[q] = p < 0 ? 0 : columnIndices[p]
                vi[q] = p < 0 ? 0 : values[p]
            }
        }
        descriptor = sq_csr(
            rowptr: rp.pointer, window_slices: ws.pointer, slice_levels: sls.pointer,
            lane_rows: lr.pointer, lane_counts: lc.pointer, cols: UnsafeRawPointer(c0.pointer),
            vals: UnsafeRawPointer(v0.pointer),
            rows: Int64(rows), columns: Int64(columns), window: Int64(w), compact: isCompact ? 1 : 0)
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

    /// Bytes held: row pointers, window and slice tables, each lane's row and chunk length, and per
    /// slot its column and value (a product reads all but the row pointers and chunk lengths).
    public var byteCount: Int {
        rowPtr.count * 4 + windowSlices.count * 4 + sliceLevels.count * 4 + (sliceLevels.count - 1) * 24
            + slotCount * (isCompact ? 4 : 8)
    }

    /// The sliced layout, copied: each window's first slice (and the end), each slice's first level
    /// (and the end), each lane's row as an offset in its window (`SQ_SELL_EMPTY`: no row) and the
    /// nonzeros of its chunk.
    public var layout: (windowSlices: [Int32], sliceLevels: [Int32], laneRows: [UInt16], laneCounts: [UInt8]) {
        let slices = sliceLevels.count - 1
        return (
            windowSlices.toArray(), sliceLevels.toArray(), Array(laneRows.toArray().prefix(slices * 8)),
            Array(laneCounts.toArray().prefix(slices * 8))
        )
    }

    /// The CSR arrays in row order, copied.
    public var csr: (rowPointers: [Int32], columnIndices: [Int32], values: [Float]) {
        let rp = rowPtr.toArray()
        var ci = [Int32](repeating: 0, count: nonzeroCount), vs = [Float](repeating: 0, count: nonzeroCount)
        let cp = UnsafeRawPointer(cols.pointer), vp = UnsafeRawPointer(vals.pointer)
        var next = rp  // a row's chunks come in order in the layout
        for w in 0..<(windowSlices.count - 1) {
            for s in Int(windowSlices[w])..<Int(windowSlices[w + 1]) {
                let j0 = Int(sliceLevels[s])
                for l in 0..<8 where laneRows[s * 8 + l] != UInt16(SQ_SELL_EMPTY) {
                    let r = w * window + Int(laneRows[s * 8 + l])
                    for j in 0..<Int(laneCounts[s * 8 + l]) {
                        let q = (j0 + j) * 8 + l, p = Int(next[r]) + j
                        if isCompact {
                            ci[p] = Int32(cp.load(fromByteOffset: 2 * q, as: UInt16.self))
                            vs[p] = sq_f16_to_f32_1(vp.load(fromByteOffset: 2 * q, as: UInt16.self))
                        } else {
                            ci[p] = cp.load(fromByteOffset: 4 * q, as: Int32.self)
                            vs[p] = vp.load(fromByteOffset: 4 * q, as: Float.self)
                        }
                    }
                    next[r] += Int32(laneCounts[s * 8 + l])
                }
            }
        }
        return (rp, ci, vs)
    }

    /// Y[t * ldy + r] += sum_c S[r, c] X[t * ldx + c] for rows r in `rows` only, on the calling thread
    /// (for callers that already split rows over threads, such as a fused dense-and-sparse product).
    public func addMultiply(
        rows range: Range<Int>, _ x: UnsafePointer<Float>, ldx: Int, m: Int,
        _ y: UnsafeMutablePointer<Float>, ldy: Int
    ) {
        precondition(range.lowerBound >= 0 && range.upperBound <= rows)
        withUnsafePointer(to: descriptor) {
            sq_csr_spmm_range(
                $0, x, Int64(ldx), Int64(m), y, Int64(ldy), Int64(range.lowerBound), Int64(range.upperBound))
        }
    }

    /// Calls `body` with the matrix's kernel descriptor (valid only during the call).
    func withDescriptor<R>(_ body: (UnsafePointer<sq_csr>) -> R) -> R {
        withUnsafePointer(to: descriptor, body)
    }

    /// y += S x, spread over `threads` threads of `pool`.
    public func addMultiply(
        _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, pool: WorkerPool = .shared,
        threads: Int? = nil
    ) {
        addMultiply(x, ldx: columns, m: 1, y, ldy: rows, pool: pool, threads: threads)
    }

    /// Y[t * ldy + r] += sum_c S[r, c] X[t * ldx + c] for tokens t in 0..<m.
    public func addMultiply(
        _ x: UnsafePointer<Float>, ldx: Int, m: Int, _ y: UnsafeMutablePointer<Float>, ldy: Int,
        pool: WorkerPool = .shared, threads: Int? = nil
    ) {
        let nnz = nonzeroCount
        if nnz == 0 || m <= 0 { return }
        var parts = min(threads ?? pool.defaultThreads, pool.threadCount)
        if nnz * m < SparseCSRMatrix.parallelThreshold { parts = 1 }
        if parts <= 1 {
            addMultiply(rows: 0..<rows, x, ldx: ldx, m: m, y, ldy: ldy)
            return
        }
        // Part i starts at the window holding nonzero nnz * i / parts (a window is never split).
        let rp = rowPtr.pointer, nrows = Int64(rows)
        withUnsafeTemporaryAllocation(of: Int.self, capacity: parts + 1) { bounds in
            let bd = bounds.baseAddress!
            bd[0] = 0
            bd[parts] = rows
            for i in 1..<parts {
                let r = Int(sq_csr_row_of(rp, nrows, Int64(nnz * i / parts)))
                bd[i] = max(bd[i - 1], r - r % window)
            }
            pool.run(tasks: parts, threads: parts) { i, _ in
                if bd[i + 1] > bd[i] { self.addMultiply(rows: bd[i]..<bd[i + 1], x, ldx: ldx, m: m, y, ldy: ldy) }
            }
        }
    }
}
