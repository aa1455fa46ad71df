import Foundation
import SqueezeCore
import SqueezeFormats
import SqueezeKernels

/// Errors specific to quantized checkpoints.
public enum QuantizedCheckpointError: Error, CustomStringConvertible {
    case badTensor(file: String, tensor: String, detail: String)
    case unsupported(file: String, detail: String)

    public var description: String {
        switch self {
        case let .badTensor(f, t, d): return "\(f): tensor '\(t)': \(d)"
        case let .unsupported(f, d): return "\(f): \(d)"
        }
    }
}

/// A SqueezeLLM-layout checkpoint (config.json with `quantization_config.quant_method = squeezellm`):
/// per linear layer `qweight` int32 [in*b/32, out], `lookup_table` [out, 2^b] and optionally the sparse
/// part `rows`/`cols`/`vals`. Layers are repacked once at load into the kernels' layout and run from
/// their packed form.
public struct QuantizedCheckpoint {
    public let bits: Int
    let tensors: TensorSource
    let mode: LUTMode
    let file: String

    /// Layers of `bits` bits read from any tensor source (a SqueezeLLM `.pt` checkpoint, say) under
    /// the same names: `<prefix>.qweight`, `.lookup_table` and optionally `.rows`/`.cols`/`.vals`.
    public init(bits: Int, source: TensorSource, mode: LUTMode) throws {
        guard bits == 3 || bits == 4 else {
            throw QuantizedCheckpointError.unsupported(
                file: source.path, detail: "\(bits)-bit layers have no kernel (3 and 4 bits are supported)")
        }
        self.bits = bits
        tensors = source
        self.mode = mode
        file = source.path
    }

    /// Returns nil when the config has no SqueezeLLM quantization.
    public init?(configPath: String, tensors: SafeTensorsModel, mode: LUTMode) throws {
        guard let qc = try QuantizationConfig.read(configPath: configPath) else { return nil }
        guard qc.method == "squeezellm" else {
            throw QuantizedCheckpointError.unsupported(
                file: configPath, detail: "quantization method '\(qc.method)' is not supported (only squeezellm)")
        }
        let b = qc.bits
        guard b == 3 || b == 4 else {
            throw QuantizedCheckpointError.unsupported(
                file: configPath, detail: "\(b)-bit layers have no kernel (3 and 4 bits are supported)")
        }
        bits = b
        self.tensors = SafeTensorsSource(tensors)
        self.mode = mode
        file = tensors.path
    }

    /// The linear-layer factory for `DecoderModel`.
    public var factory: LinearFactory {
        { slot in try self.layer(slot) }
    }

    /// The operator of `slot`: the whole stored layer, or its rows [rowOffset, rowOffset + rows) for a
    /// fused QKV (each output row has its own table, so a row slice is a layer of its own).
    func layer(_ slot: LinearSlot) throws -> LinearOperator? {
        guard tensors.contains(slot.prefix + ".qweight") else { return nil }
        return try layer(
            slot.prefix, tensorRows: slot.tensorRows, rowOffset: slot.rowOffset, rows: slot.rows, cols: slot.columns)
    }

    /// Rows [r0, r0 + n) of the stored layer `p` of `full` rows and `cols` columns, every shape,
    /// index and range read from the file checked first (a typed error names the tensor).
    func layer(_ p: String, tensorRows full: Int, rowOffset r0: Int, rows n: Int, cols: Int) throws -> LinearOperator {
        func bad(_ suffix: String, _ detail: String) -> QuantizedCheckpointError {
            .badTensor(file: file, tensor: p + suffix, detail: detail)
        }
        guard full >= 1, cols >= 1, r0 >= 0, n >= 1, r0 <= full - n else {
            throw bad(".qweight", "rows [\(r0), \(r0 &+ n)) of a \(full)-row layer are out of range")
        }
        let (bitCount, o1) = cols.multipliedReportingOverflow(by: bits)
        guard !o1, bitCount % 32 == 0 else {
            throw bad(".qweight", "\(cols) columns of \(bits) bits do not fill whole 32-bit words")
        }
        let wordRows = bitCount / 32
        let qw = try tensors.tensor(p + ".qweight")
        guard qw.dtype == .i32, qw.shape == [wordRows, full] else {
            throw bad(".qweight", "expected I32 [\(wordRows), \(full)], got \(qw.dtype.rawValue) \(qw.shape)")
        }
        let lt = try tensors.tensor(p + ".lookup_table")
        let k = 1 << bits
        guard lt.shape == [full, k], lt.dtype.isFloatingPoint else {
            throw bad(".lookup_table", "expected a float [\(full), \(k)], got \(lt.dtype.rawValue) \(lt.shape)")
        }
        let src = qw.data.assumingMemoryBound(to: Int32.self)
        let words: [Int32]
        let lut: [Float]
        if n == full {
            words = Array(UnsafeBufferPointer(start: src, count: wordRows * full))
            lut = lt.toFloatArray()
        } else {
            var w = [Int32](repeating: 0, count: wordRows * n)
            for i in 0..<wordRows { for j in 0..<n { w[i * n + j] = src[i * full + r0 + j] } }
            words = w
            lut = Array(lt.toFloatArray()[(r0 * k)..<((r0 + n) * k)])
        }
        var sparse: SparseCSRMatrix?
        if tensors.contains(p + ".rows") {
            let rt = try tensors.tensor(p + ".rows"), ct = try tensors.tensor(p + ".cols")
            let vt = try tensors.tensor(p + ".vals")
            guard rt.shape == [full + 1], ct.shape.count == 1, vt.shape == ct.shape else {
                throw bad(
                    ".rows",
                    "sparse part shapes rows \(rt.shape), cols \(ct.shape), vals \(vt.shape) do not fit [\(full), \(cols)]"
                )
            }
            let r = try indices(rt, p + ".rows"), c = try indices(ct, p + ".cols")
            let nnz = c.count
            guard r[0] == 0, Int(r[full]) == nnz else {
                throw bad(".rows", "row pointers must start at 0 and end at the \(nnz) stored values")
            }
            for i in 0..<full where r[i] > r[i + 1] {
                throw bad(".rows", "row pointers decrease at row \(i) (\(r[i]) > \(r[i + 1]))")
            }
            if let j = c.firstIndex(where: { $0 < 0 || Int($0) >= cols }) {
                throw bad(".cols", "column index \(c[j]) at \(j) is outside [0, \(cols))")
            }
            let a = Int(r[r0]), b = Int(r[r0 + n])
            do {
                sparse = try SparseCSRMatrix(
                    rows: n, columns: cols, rowPointers: r[r0...(r0 + n)].map { $0 - Int32(a) },
                    columnIndices: Array(c[a..<b]), values: Array(vt.toFloatArray()[a..<b]))
            } catch {
                throw bad(".rows", "\(error)")
            }
        }
        do {
            return try LUTMatrix(
                squeezeLLMQWeight: words, lut: lut, rows: n, columns: cols, bits: bits, sparse: sparse, mode: mode)
        } catch {
            throw bad(".qweight", "\(error)")
        }
    }

    /// The integer entries of a sparse index tensor as Int32: I32, or I64/I16/U8... values that fit.
    /// Floats (a NaN would trap a conversion) and values beyond Int32 are refused, naming the tensor.
    func indices(_ t: Tensor, _ name: String) throws -> [Int32] {
        let n = t.elementCount
        func bad(_ d: String) -> QuantizedCheckpointError { .badTensor(file: file, tensor: name, detail: d) }
        func convert<T: BinaryInteger>(_ type: T.Type) throws -> [Int32] {
            let p = UnsafeBufferPointer(start: t.data.assumingMemoryBound(to: T.self), count: n)
            var out = [Int32]()
            out.reserveCapacity(n)
            for (i, v) in p.enumerated() {
                guard let x = Int32(exactly: v) else { throw bad("index \(v) at \(i) does not fit in 32 bits") }
                out.append(x)
            }
            return out
        }
        switch t.dtype {
        case .i32: return Array(UnsafeBufferPointer(start: t.data.assumingMemoryBound(to: Int32.self), count: n))
        case .i64: return try convert(Int64.self)
        case .i16: return try convert(Int16.self)
        case .i8: return try convert(Int8.self)
        case .u64: return try convert(UInt64.self)
        case .u32: return try convert(UInt32.self)
        case .u16: return try convert(UInt16.self)
        case .u8: return try convert(UInt8.self)
        default: throw bad("sparse indices must be integers, got \(t.dtype.rawValue)")
        }
    }
}

/// The `quantization_config` of a Hugging Face config.json as SqueezeLLM checkpoints write it:
/// `quant_method` (default "squeezellm") and `wbits`.
public struct QuantizationConfig: Sendable, Equatable {
    public var method: String
    public var bits: Int

    /// Reads it from the config at `configPath`; nil when there is none. Errors name the field.
    public static func read(configPath: String) throws -> QuantizationConfig? {
        try ModelError.mappingConfigErrors {
            let cfg = try JSONConfig(path: configPath)
            guard let qc = cfg.object("quantization_config") else { return nil }
            let sub = JSONConfig(path: configPath, object: qc, prefix: "quantization_config.")
            return QuantizationConfig(
                method: try sub.optionalString("quant_method") ?? "squeezellm", bits: try sub.int("wbits"))
        }
    }
}
