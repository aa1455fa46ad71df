import CSqueezeKernels
import SqueezeCore

// The C kernels' parallel loops as `PoolJob`s: each holds the kernel's C job struct and runs one task
// of its C task function, so a dispatch is a job on the caller's stack and allocates nothing.

/// Row blocks of the dense F32/F16/BF16 GEMV (`sq_gemv_task`).
struct GEMVJob: PoolJob {
    var c: sq_gemv_job
    func run(task: Int, thread: Int) {
        withUnsafePointer(to: c) { sq_gemv_task(UnsafeMutableRawPointer(mutating: $0), Int64(task), Int32(thread)) }
    }
}

/// Blocks of the fused SiLU-times-up product (`sq_silu_mul_task`).
struct SiluMulJob: PoolJob {
    var c: sq_silu_mul_job
    func run(task: Int, thread: Int) {
        withUnsafePointer(to: c) { sq_silu_mul_task(UnsafeMutableRawPointer(mutating: $0), Int64(task), Int32(thread)) }
    }
}

/// One token's activation quantization for the LUT int8 path (`sq_lut_quantize_task`).
struct LUTQuantizeJob: PoolJob {
    var c: sq_lut_quantize_job
    func run(task: Int, thread: Int) {
        withUnsafePointer(to: c) {
            sq_lut_quantize_task(UnsafeMutableRawPointer(mutating: $0), Int64(task), Int32(thread))
        }
    }
}

/// Row blocks of the LUT int8 product with its fused sparse part (`sq_lut_i8_task`).
struct LUTInt8Job: PoolJob {
    var c: sq_lut_i8_job
    func run(task: Int, thread: Int) {
        withUnsafePointer(to: c) { sq_lut_i8_task(UnsafeMutableRawPointer(mutating: $0), Int64(task), Int32(thread)) }
    }
}

/// Row blocks of the Q8 head's product (`sq_q8_task`).
struct Q8Job: PoolJob {
    var c: sq_q8_job
    func run(task: Int, thread: Int) {
        withUnsafePointer(to: c) { sq_q8_task(UnsafeMutableRawPointer(mutating: $0), Int64(task), Int32(thread)) }
    }
}

extension VectorOps {
    /// out[i] = silu(g[i]) * u[i] for i in 0..<n, in blocks over the pool (`out` may be `g`);
    /// allocates nothing.
    public static func siluMul(
        _ g: UnsafePointer<Float>, _ u: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>,
        _ n: Int, pool: WorkerPool
    ) {
        if n <= 0 { return }
        let block = pool.blockLength(n, minBlock: 8192)
        var job = SiluMulJob(c: sq_silu_mul_job(g: g, u: u, out: out, n: Int64(n), block: Int64(block)))
        pool.run(tasks: (n + block - 1) / block, job: &job)
    }
}
