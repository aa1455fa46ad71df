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
        let cfg = try ModelError.mappingConfigErrors { try JSONConfig(path: configPath) }
        guard let qc = cfg.object("quantization_config") else { return nil }
        let sub = JSONConfig(path: configPath, object: qc, prefix: "quantization_config.")
        let method = try ModelError.mappingConfigErrors { try sub.optionalString("quant_method") } ?? "squeezellm"
        guard method == "squeezellm" else {
            throw QuantizedCheckpointError.unsupported(
                file: configPath, detail: "quantization method '\(method)' is not supported (only squeezellm)")
        }
        let b = try ModelError.mappingConfigErrors { try sub.int("wbits") }
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
        let p = slot.prefix
        guard tensors.contains(p + ".qweight") else { return nil }
        if slot.isWhole { return try layer(p, rows: slot.rows, cols: slot.columns) }
        let full = slot.tensorRows, cols = slot.columns, r0 = slot.rowOffset, n = slot.rows
        let qw = try tensors.tensor(p + ".qweight")
        let wordRows = cols * bits / 32
        guard qw.dtype == .i32, qw.shape == [wordRows, full] else {
            throw QuantizedCheckpointError.badTensor(
                file: file, tensor: p + ".qweight",
                detail: "expected I32 [\(wordRows), \(full)], got \(qw.dtype.rawValue) \(qw.shape)")
        }
        let lt = try tensors.tensor(p + ".lookup_table")
        let k = 1 << bits
        guard lt.shape == [full, k], lt.dtype.isFloatingPoint else {
            throw QuantizedCheckpointError.badTensor(
                file: file, tensor: p + ".lookup_table",
                detail: "expected a float [\(full), \(k)], got \(lt.dtype.rawValue) \(lt.shape)")
        }
        let src = qw.data.assumingMemoryBound(to: Int32.self)
        var words = [Int32](repeating: 0, count: wordRows * n)
        for w in 0..<wordRows { for j in 0..<n { words[w * n + j] = src[w * full + r0 + j] } }
        let lut = Array(lt.toFloatArray()[(r0 * k)..<((r0 + n) * k)])
        var sparse: SparseCSRMatrix?
        if tensors.contains(p + ".rows") {
            let r = try tensors.tensor(p + ".rows").toIntArray(), c = try tensors.tensor(p + ".cols").toIntArray()
            let v = try tensors.tensor(p + ".vals").toFloatArray()
            guard r.count == full + 1, c.count == v.count, r.last == c.count else {
                throw QuantizedCheckpointError.badTensor(
                    file: file, tensor: p + ".rows",
                    detail:
                        "sparse part (rows \(r.count), cols \(c.count), vals \(v.count)) does not fit [\(full), \(cols)]"
                )
            }
            let a = r[r0], b = r[r0 + n]
            do {
                sparse = try SparseCSRMatrix(
                    rows: n, columns: cols, rowPointers: r[r0...(r0 + n)].map { Int32($0 - a) },
                    columnIndices: c[a..<b].map { Int32($0) }, values: Array(v[a..<b]))
            } catch {
                throw QuantizedCheckpointError.badTensor(file: file, tensor: p + ".rows", detail: "\(error)")
            }
        }
        do {
            return try LUTMatrix(
                squeezeLLMQWeight: words, lut: lut, rows: n, columns: cols, bits: bits, sparse: sparse, mode: mode)
        } catch {
            throw QuantizedCheckpointError.badTensor(file: file, tensor: p + ".qweight", detail: "\(error)")
        }
    }

    func layer(_ p: String, rows: Int, cols: Int) throws -> LinearOperator? {
        guard tensors.contains(p + ".qweight") else { return nil }
        let qw = try tensors.tensor(p + ".qweight")
        let wordRows = cols * bits / 32
        guard qw.dtype == .i32, qw.shape == [wordRows, rows] else {
            throw QuantizedCheckpointError.badTensor(
                file: file, tensor: p + ".qweight",
                detail: "expected I32 [\(wordRows), \(rows)], got \(qw.dtype.rawValue) \(qw.shape)")
        }
        let lt = try tensors.tensor(p + ".lookup_table")
        guard lt.shape == [rows, 1 << bits], lt.dtype.isFloatingPoint else {
            throw QuantizedCheckpointError.badTensor(
                file: file, tensor: p + ".lookup_table",
                detail: "expected a float [\(rows), \(1 << bits)], got \(lt.dtype.rawValue) \(lt.shape)")
        }
        var sparse: SparseCSRMatrix?
        if tensors.contains(p + ".rows") {
            let r = try tensors.tensor(p + ".rows"), c = try tensors.tensor(p + ".cols"),
                v = try tensors.tensor(p + ".vals")
            guard r.shape == [rows + 1], c.shape.count == 1, v.shape == c.shape else {
                throw QuantizedCheckpointError.badTensor(
                    file: file, tensor: p + ".rows",
                    detail:
                        "sparse part shapes rows \(r.shape), cols \(c.shape), vals \(v.shape) do not fit [\(rows), \(cols)]"
                )
            }
            do {
                sparse = try SparseCSRMatrix(
                    rows: rows, columns: cols, rowPointers: r.toIntArray().map { Int32($0) },
                    columnIndices: c.toIntArray().map { Int32($0) }, values: v.toFloatArray())
            } catch {
                throw QuantizedCheckpointError.badTensor(file: file, tensor: p + ".rows", detail: "\(error)")
            }
        }
        let words = UnsafeBufferPointer(start: qw.data.assumingMemoryBound(to: Int32.self), count: qw.elementCount)
        do {
            return try LUTMatrix(
                squeezeLLMQWeight: Array(words), lut: lt.toFloatArray(), rows: rows, columns: cols, bits: bits,
                sparse: sparse, mode: mode)
        } catch {
            throw QuantizedCheckpointError.badTensor(file: file, tensor: p + ".qweight", detail: "\(error)")
        }
    }
}
