import CSqueezeKernels
import SqueezeCore

/// One C kernel's parallel loop as a `PoolJob`: the kernel's C job struct and its C task function
/// (`sq_gemv_task`, `sq_lut_i8_task`, ...), so that a dispatch is a job on the caller's stack and
/// allocates nothing.
struct CTaskJob<Job>: PoolJob {
    /// A C task function: `void f(void *job, int64_t task, int thread)`.
    typealias TaskFunction = @convention(c) (UnsafeMutableRawPointer?, Int64, Int32) -> Void
    var c: Job
    let function: TaskFunction
    func run(task: Int, thread: Int) {
        withUnsafePointer(to: c) { function(UnsafeMutableRawPointer(mutating: $0), Int64(task), Int32(thread)) }
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
        var job = CTaskJob(
            c: sq_silu_mul_job(g: g, u: u, out: out, n: Int64(n), block: Int64(block)), function: sq_silu_mul_task)
        pool.run(tasks: (n + block - 1) / block, job: &job)
    }
}
