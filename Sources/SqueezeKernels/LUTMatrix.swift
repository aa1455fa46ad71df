import CSqueezeKernels
import SqueezeCore

/// How a `LUTMatrix` computes its products.
public enum LUTMode: String, Sendable, CaseIterable, CustomStringConvertible {
    /// Exact: float table entries times float activations (only the summation order differs from
    /// the plain reference).
    case float
    /// Fast: table entries as 7-bit codes with a per-row scale and offset (searched per row for the
    /// least squared error, at most (max - min) / 127 x 0.75 off per entry), activations as int8 in
    /// blocks of `LUTMatrix.activationBlock` with a per-block scale (max|x| / 127), integer dot
    /// products. Error per product term is bounded by half a quantization step of each factor.
    case int8

    public var description: String { rawValue }
}

/// How the sparse part of a `LUTMatrix` is scheduled.
public enum SparseSchedule: String, Sendable, CaseIterable {
    /// Each thread adds the sparse rows of the dense row blocks it computed (no second parallel
    /// section). Decode products give each thread one contiguous block of rows (balancing the blocks
    /// by nonzeros made no difference: docs/sparse-layout.md).
    case fused
    /// A second parallel section split by nonzeros (`SparseCSRMatrix.addMultiply`). Decode products
    /// only: prefill adds the sparse values to the decoded row blocks in either schedule.
    case balanced
}

/// A weight matrix W [rows, columns] quantized with one look-up table per output row:
/// W[r, c] = lut[r][idx[r, c]] with 3- or 4-bit indices, plus an optional sparse part S, so that
/// the products compute (W + S) x.
///
/// The indices are repacked once at load time into the CPU-friendly layout described in `sq_lut.h`
/// (input dimension padded with index 0 to a multiple of 64 (4 bits) or 128 (3 bits)).
///
/// Not reentrant: `gemv`/`gemm` use scratch buffers owned by the matrix, so one matrix must not be
/// used by two products at the same time (different matrices may be).
public final class LUTMatrix: @unchecked Sendable {
    /// Number of outputs.
    public let rows: Int
    /// Number of inputs.
    public let columns: Int
    /// Index width: 3 or 4.
    public let bits: Int
    /// `columns` rounded up to the packing multiple.
    public let paddedColumns: Int
    /// Bytes of one packed row.
    public let rowBytes: Int
    /// The product path used by `gemv`/`gemm` (settable).
    public var mode: LUTMode
    /// Optional sparse part added to every product.
    public let sparse: SparseCSRMatrix?
    /// How the sparse part is scheduled (settable).
    public var sparseSchedule: SparseSchedule = .fused

    // The buffers' base addresses, read on every product: kept beside the sizes so that a product
    // touches this object's first lines only, not each (cold) buffer object in turn (docs/kernels.md).
    // Invariant: equal to packed/table/qtable/qscale/qoffset.pointer and, after `reserve`, to
    // xpad/xq/xd/xs.pointer.
    private let packedBase: UnsafeMutablePointer<UInt8>
    private let tableBase: UnsafeMutablePointer<Float>
    private let qtableBase: UnsafeMutablePointer<UInt8>
    private let qscaleBase: UnsafeMutablePointer<Float>
    private let qoffsetBase: UnsafeMutablePointer<Float>
    private var xpadBase: UnsafeMutablePointer<Float>
    private var xqBase: UnsafeMutablePointer<Int8>
    private var xdBase: UnsafeMutablePointer<Float>
    private var xsBase: UnsafeMutablePointer<Float>

    /// Activations are quantized to int8 in blocks of this many values (int8 mode).
    public static let activationBlock = Int(SQ_LUT_QBLOCK)

    let packed: AlignedBuffer<UInt8>
    let table: AlignedBuffer<Float>  // rows * 16
    let qtable: AlignedBuffer<UInt8>  // rows * 16 codes (0...127)
    let qscale: AlignedBuffer<Float>  // rows
    let qoffset: AlignedBuffer<Float>  // rows

    // Scratch, grown to the largest token count seen.
    private var capacity = 0
    private var xpad = AlignedBuffer<Float>(count: 0)
    private var xq = AlignedBuffer<Int8>(count: 0)
    private var xd = AlignedBuffer<Float>(count: 0)
    private var xs = AlignedBuffer<Float>(count: 0)

    private struct Storage {
        let paddedColumns: Int, rowBytes: Int
        let packed: AlignedBuffer<UInt8>, table: AlignedBuffer<Float>
        let qtable: AlignedBuffer<UInt8>, qscale: AlignedBuffer<Float>, qoffset: AlignedBuffer<Float>
    }

    private static func build(
        indices: UnsafeBufferPointer<UInt8>, lut: UnsafeBufferPointer<Float>, rows: Int,
        columns: Int, bits: Int, sparse: SparseCSRMatrix?, pool: WorkerPool
    ) throws -> Storage {
        guard bits == 3 || bits == 4 else { throw LUTError.unsupportedBits(bits) }
        guard rows > 0 else { throw LUTError.badDimension(what: "rows", value: rows, requirement: "positive") }
        guard columns > 0 else { throw LUTError.badDimension(what: "columns", value: columns, requirement: "positive") }
        guard indices.count == rows * columns else {
            throw LUTError.badCount(what: "indices", expected: rows * columns, got: indices.count)
        }
        let n = 1 << bits
        guard lut.count == rows * n else {
            throw LUTError.badCount(what: "lookup table", expected: rows * n, got: lut.count)
        }
        if let s = sparse, s.rows != rows || s.columns != columns {
            throw LUTError.badSparse(
                "shape [\(s.rows), \(s.columns)] does not match the dense part [\(rows), \(columns)]")
        }
        let base = indices.baseAddress!
        for i in 0..<indices.count where Int(base[i]) >= n {
            throw LUTError.indexOutOfRange(row: i / columns, column: i % columns, value: Int(base[i]), bits: bits)
        }
        let paddedColumns = Int(sq_lut_padded_cols(Int32(bits), Int64(columns)))
        let rowBytes = Int(sq_lut_row_bytes(Int32(bits), Int64(paddedColumns)))
        let packed = AlignedBuffer<UInt8>(count: rows * rowBytes)
        let table = AlignedBuffer<Float>(count: rows * 16)
        let qtable = AlignedBuffer<UInt8>(count: rows * 16)
        let qscale = AlignedBuffer<Float>(count: rows)
        let qoffset = AlignedBuffer<Float>(count: rows)
        let lb = lut.baseAddress!
        for r in 0..<rows {
            for e in 0..<n { table[r * 16 + e] = lb[r * n + e] }
        }
        let out = packed.pointer, kpad = Int64(paddedColumns)
        let tp = table.pointer, qt = qtable.pointer, qs = qscale.pointer, qo = qoffset.pointer
        pool.parallelFor(rows, minBlock: 64) { range, _ in
            let r0 = Int64(range.lowerBound), r1 = Int64(range.upperBound)
            sq_lut_pack(Int32(bits), base, Int64(columns), Int64(columns), kpad, out, r0, r1)
            sq_lut_quantize_tables(Int32(bits), tp, r0, r1, qt, qs, qo)
        }
        return Storage(
            paddedColumns: paddedColumns, rowBytes: rowBytes, packed: packed, table: table, qtable: qtable,
            qscale: qscale, qoffset: qoffset)
    }

    private init(storage s: Storage, rows: Int, columns: Int, bits: Int, sparse: SparseCSRMatrix?, mode: LUTMode) {
        self.rows = rows
        self.columns = columns
        self.bits = bits
        self.sparse = sparse
        self.mode = mode
        paddedColumns = s.paddedColumns
        rowBytes = s.rowBytes
        packed = s.packed
        table = s.table
        qtable = s.qtable
        qscale = s.qscale
        qoffset = s.qoffset
        packedBase = s.packed.pointer
        tableBase = s.table.pointer
        qtableBase = s.qtable.pointer
        qscaleBase = s.qscale.pointer
        qoffsetBase = s.qoffset.pointer
        xpadBase = xpad.pointer
        xqBase = xq.pointer
        xdBase = xd.pointer
        xsBase = xs.pointer
    }

    /// Builds the matrix from unpacked indices (row-major [rows, columns], one byte each, values
    /// below 2^bits) and tables (row-major [rows, 2^bits]).
    public convenience init(
        indices: UnsafeBufferPointer<UInt8>, lut: UnsafeBufferPointer<Float>, rows: Int, columns: Int,
        bits: Int, sparse: SparseCSRMatrix? = nil, mode: LUTMode = .int8, pool: WorkerPool = .shared
    ) throws {
        let s = try LUTMatrix.build(
            indices: indices, lut: lut, rows: rows, columns: columns, bits: bits, sparse: sparse, pool: pool)
        self.init(storage: s, rows: rows, columns: columns, bits: bits, sparse: sparse, mode: mode)
    }

    /// Builds the matrix from arrays (see the pointer initializer).
    public convenience init(
        indices: [UInt8], lut: [Float], rows: Int, columns: Int, bits: Int,
        sparse: SparseCSRMatrix? = nil, mode: LUTMode = .int8, pool: WorkerPool = .shared
    ) throws {
        let s = try indices.withUnsafeBufferPointer { ip in
            try lut.withUnsafeBufferPointer { lp in
                try LUTMatrix.build(
                    indices: ip, lut: lp, rows: rows, columns: columns, bits: bits, sparse: sparse, pool: pool)
            }
        }
        self.init(storage: s, rows: rows, columns: columns, bits: bits, sparse: sparse, mode: mode)
    }

    /// Builds the matrix from SqueezeLLM's packed `qweight` (int32 [columns * bits / 32, rows]) and
    /// `lookup_table` ([rows, 2^bits], converted to Float).
    public convenience init(
        squeezeLLMQWeight qweight: [Int32], lut: [Float], rows: Int, columns: Int, bits: Int,
        sparse: SparseCSRMatrix? = nil, mode: LUTMode = .int8
    ) throws {
        let idx = try SqueezeLLMLayout.unpack(qweight: qweight, bits: bits, rows: rows, cols: columns)
        try self.init(indices: idx, lut: lut, rows: rows, columns: columns, bits: bits, sparse: sparse, mode: mode)
    }

    /// Bytes of the packed indices.
    public var packedByteCount: Int { packed.count }
    /// Bytes in memory of the quantized form: packed indices, float tables (2^bits per row), 7-bit
    /// code tables with their scales and offsets, and the sparse part.
    public var byteCount: Int { packed.count + rows * ((4 << bits) + 24) + (sparse?.byteCount ?? 0) }
    /// Bytes read by one product in the current mode (packed indices, the tables that mode reads,
    /// the sparse part).
    public var weightBytes: Int {
        let tables = mode == .float ? rows * (4 << bits) : rows * 24
        return packed.count + tables + (sparse?.byteCount ?? 0)
    }
    /// "lut4", "lut3", with "+sparse" when there is a sparse part.
    public var kind: String { "lut\(bits)" + (sparse == nil ? "" : "+sparse") }

    /// The unpacked indices of row `r` (for checks).
    public func indices(row r: Int) -> [UInt8] {
        precondition(r >= 0 && r < rows)
        var out = [UInt8](repeating: 0, count: columns)
        out.withUnsafeMutableBufferPointer { o in
            sq_lut_unpack_row(
                Int32(bits), packed.pointer, Int64(paddedColumns), Int64(r), Int64(columns), o.baseAddress!)
        }
        return out
    }

    /// The float table of row `r` (2^bits entries).
    public func table(row r: Int) -> [Float] { (0..<(1 << bits)).map { table[r * 16 + $0] } }
    /// The int8 path's table of row `r`: 2^bits codes (0...127), scale and offset, lut ≈ scale * q + offset.
    public func int8Table(row r: Int) -> (q: [UInt8], scale: Float, offset: Float) {
        ((0..<(1 << bits)).map { qtable[r * 16 + $0] }, qscale[r], qoffset[r])
    }

    private func reserve(tokens m: Int) {
        if m <= capacity { return }
        let c = max(m, capacity * 2)
        xpad = AlignedBuffer<Float>(count: c * paddedColumns)
        xq = AlignedBuffer<Int8>(count: c * paddedColumns)
        xd = AlignedBuffer<Float>(count: c * paddedColumns / LUTMatrix.activationBlock)
        xs = AlignedBuffer<Float>(count: c)
        xpadBase = xpad.pointer
        xqBase = xq.pointer
        xdBase = xd.pointer
        xsBase = xs.pointer
        capacity = c
    }

    /// y[0..<rows] = (W + S) x[0..<columns], spread over `threads` threads of `pool` (default: the
    /// pool's default).
    public func gemv(
        _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, pool: WorkerPool = .shared,
        threads: Int? = nil
    ) {
        gemm(x, ldx: columns, m: 1, y, ldy: rows, pool: pool, threads: threads)
    }

    /// Y[t * ldy + r] = sum_c X[t * ldx + c] (W + S)[r, c] for tokens t in 0..<m. Each decoded weight
    /// tile is used for up to 4 tokens at once.
    public func gemm(
        _ x: UnsafePointer<Float>, ldx: Int, m: Int, _ y: UnsafeMutablePointer<Float>, ldy: Int,
        pool: WorkerPool = .shared, threads: Int? = nil
    ) {
        if m <= 0 { return }
        reserve(tokens: m)
        let kpad = paddedColumns, k = columns, b = Int32(bits)
        let w = packedBase
        let nt = min(threads ?? pool.defaultThreads, pool.threadCount)
        let fused = sparseSchedule == .fused ? sparse : nil
        if m >= LUTMatrix.prefillThreshold {
            // Many tokens (prefill): decode each row block once to F32, add the sparse part's values
            // to it, and run the dense GEMM on it (exact float tables in both modes, either schedule).
            let lut = tableBase
            func run(_ sp: UnsafePointer<sq_csr>?) {
                pool.parallelFor(rows, minBlock: 16, blocksPerThread: 4, threads: nt) { range, _ in
                    sq_lut_gemm_dequant(
                        b, w, lut, sp, Int64(kpad), Int64(k), x, Int64(ldx), Int64(m), y, Int64(ldy),
                        Int64(range.lowerBound), Int64(range.upperBound))
                }
            }
            if let s = sparse { s.withDescriptor { run($0) } } else { run(nil) }
            return
        }
        switch mode {
        case .float:
            var xp = x, ldp = ldx
            if m > 1 || k != kpad {
                let dst = xpadBase
                for t in 0..<m { (dst + t * kpad).update(from: x + t * ldx, count: k) }
                xp = UnsafePointer(dst)
                ldp = kpad
            }
            let lut = tableBase
            pool.parallelFor(rows, minBlock: 16, blocksPerThread: 4, threads: nt) { range, _ in
                sq_lut_gemm_f32(
                    b, w, lut, xp, Int64(ldp), Int64(m), y, Int64(ldy), Int64(kpad),
                    Int64(range.lowerBound), Int64(range.upperBound))
                fused?.addMultiply(rows: range, x, ldx: ldx, m: m, y, ldy: ldy)
            }
        case .int8:
            let q = xqBase, d = xdBase, sx = xsBase, nb = kpad / LUTMatrix.activationBlock
            if m >= 8 {
                // One task per token, through a job on the stack (no allocation per product).
                var job = CTaskJob(
                    c: sq_lut_quantize_job(x: x, ldx: Int64(ldx), k: Int64(k), kpad: Int64(kpad), xq: q, d: d, sx: sx),
                    function: sq_lut_quantize_task)
                pool.run(tasks: m, threads: nt, job: &job)
            } else {
                for t in 0..<m {
                    sq_lut_quantize_x(x + t * ldx, Int64(k), Int64(kpad), q + t * kpad, d + t * nb, sx + t)
                }
            }
            // One block of rows per thread, through a job on the stack (no allocation per product).
            let block = pool.blockLength(rows, minBlock: 16, blocksPerThread: 1, threads: nt)
            func dispatch(_ sp: UnsafePointer<sq_csr>?) {
                var job = CTaskJob(
                    c: sq_lut_i8_job(
                        bits: b, w: w, qt: qtableBase, scale: qscaleBase, offset: qoffsetBase,
                        xq: q, d: d, sx: sx, m: Int64(m), y: y, ldy: Int64(ldy), kpad: Int64(kpad),
                        sparse: sp, x: x, ldx: Int64(ldx), rows: Int64(rows), block: Int64(block)),
                    function: sq_lut_i8_task)
                pool.run(tasks: (rows + block - 1) / block, threads: nt, job: &job)
            }
            if let f = fused { f.withDescriptor { dispatch($0) } } else { dispatch(nil) }
        }
        if sparseSchedule == .balanced { sparse?.addMultiply(x, ldx: ldx, m: m, y, ldy: ldy, pool: pool, threads: nt) }
    }

    /// From this many tokens on, `gemm` decodes row blocks to F32 and uses the dense GEMM kernel.
    nonisolated(unsafe) public static var prefillThreshold = 16

    /// The kernel variants the dispatcher uses now, e.g. "float avx2, int8 avx2".
    public static var variant: String { String(cString: sq_lut_variant()) }
}
