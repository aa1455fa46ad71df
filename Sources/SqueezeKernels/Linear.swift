import SqueezeCore

/// A linear layer's weight as an operator: y = W x for one token, Y = X W^T for several.
/// `W` has `rows` outputs and `columns` inputs. Implementations are dense (F32/F16/BF16)
/// or quantized (look-up tables plus an optional sparse part).
public protocol LinearOperator: AnyObject, Sendable {
    /// Number of outputs.
    var rows: Int { get }
    /// Number of inputs.
    var columns: Int { get }
    /// Bytes of weight data read by one matrix-vector product (for bandwidth figures).
    var weightBytes: Int { get }
    /// A short description of the storage ("f32", "f16", "lut4", "lut3+sparse", ...).
    var kind: String { get }
    /// y[0..<rows] = W x[0..<columns], spread over the pool.
    func gemv(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, pool: WorkerPool)
    /// Y[t * ldy + r] = sum_c X[t * ldx + c] W[r, c] for t in 0..<m, spread over the pool.
    func gemm(_ x: UnsafePointer<Float>, ldx: Int, m: Int, _ y: UnsafeMutablePointer<Float>, ldy: Int, pool: WorkerPool)
}
