import SqueezeCore

/// A look-up-table matrix (with its optional sparse part) is a linear operator of the engine.
extension LUTMatrix: LinearOperator {
    public func gemv(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, pool: WorkerPool) {
        gemv(x, y, pool: pool, threads: nil)
    }
    public func gemm(
        _ x: UnsafePointer<Float>, ldx: Int, m: Int, _ y: UnsafeMutablePointer<Float>, ldy: Int, pool: WorkerPool
    ) {
        gemm(x, ldx: ldx, m: m, y, ldy: ldy, pool: pool, threads: nil)
    }
}
