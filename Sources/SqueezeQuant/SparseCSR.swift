import SqueezeCore

/// The sparse part of a dense-and-sparse layer in compressed sparse row form (SqueezeLLM's
/// `rows`, `cols`, `vals`): row r's entries are `columnIndices[rowPointers[r]..<rowPointers[r+1]]`.
public struct SparseCSR: Sendable, Equatable {
    /// Output rows.
    public let rowCount: Int
    /// Input columns.
    public let columnCount: Int
    /// Row start offsets, `rowCount + 1` (SqueezeLLM's `rows`).
    public var rowPointers: [Int32]
    /// Column of each entry, ascending within a row (SqueezeLLM's `cols`).
    public var columnIndices: [Int32]
    /// Value of each entry (SqueezeLLM's `vals`): w minus the dense table value at that position.
    public var values: [Float]

    /// Creates a CSR matrix from its parts.
    public init(rowCount: Int, columnCount: Int, rowPointers: [Int32], columnIndices: [Int32], values: [Float]) {
        self.rowCount = rowCount; self.columnCount = columnCount
        self.rowPointers = rowPointers; self.columnIndices = columnIndices; self.values = values
    }

    /// Number of stored entries.
    public var nonzeroCount: Int { values.count }

    /// Builds the sparse part from the kept positions of `weights` and its dense quantization.
    ///
    /// Each value is `w - lut[row][index]` computed exactly in Float64 and rounded once to Float32, so
    /// `Double(dense) + Double(value)` is within half an FP32 ulp of `value` from `w` (and equals `w`
    /// exactly whenever `w - dense` is representable in FP32, e.g. when the dense value is 0 or
    /// within a factor of 2 of `w`). With the quantizer's `keepMask`, the dense index of a kept
    /// position is the row's centroid nearest 0, as in the reference.
    public static func build(
        weights: UnsafePointer<Float>, keepMask: UnsafePointer<UInt8>,
        quantized q: QuantizedMatrix
    ) -> SparseCSR {
        let rows = q.rows, cols = q.cols, k = q.clusters
        var ptr = [Int32](repeating: 0, count: rows + 1)
        var colsOut: [Int32] = []
        var vals: [Float] = []
        for r in 0..<rows {
            for c in 0..<cols where keepMask[r * cols + c] != 0 {
                let d = q.lut[r * k + Int(q.indices[r * cols + c])]
                colsOut.append(Int32(c))
                vals.append(Float(Double(weights[r * cols + c]) - Double(d)))
            }
            ptr[r + 1] = Int32(colsOut.count)
        }
        return SparseCSR(rowCount: rows, columnCount: cols, rowPointers: ptr, columnIndices: colsOut, values: vals)
    }

    /// The values as FP16 bit patterns (round to nearest even).
    public func valuesHalf() -> [UInt16] { values.map { HalfConversion.toHalf($0) } }

    /// Adds the sparse entries into a dense row-major `rowCount x columnCount` matrix.
    public func add(into dense: inout [Float]) {
        for r in 0..<rowCount {
            for e in Int(rowPointers[r])..<Int(rowPointers[r + 1]) {
                dense[r * columnCount + Int(columnIndices[e])] += values[e]
            }
        }
    }
}
