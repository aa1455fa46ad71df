import CSqueezeKernels

/// One persistent pool of worker threads, sized to the machine, that every module uses for
/// parallel loops over row blocks. The calling thread takes part; runs are fork-join.
public final class WorkerPool: @unchecked Sendable {
    private let pool: OpaquePointer

    /// Number of threads, the caller included.
    public let threadCount: Int

    /// The shared pool. Its size is `SQUEEZE_THREADS` if set, else the number of online CPUs.
    public static let shared: WorkerPool = {
        if let s = getenvString("SQUEEZE_THREADS"), let n = Int(s), n > 0 { return WorkerPool(threads: n) }
        return WorkerPool(threads: Int(sq_cpu_count()))
    }()

    /// Number of online CPUs.
    public static var cpuCount: Int { Int(sq_cpu_count()) }

    /// Threads to use by default for a run (settable, e.g. by `--threads`); never above `threadCount`.
    public var defaultThreads: Int

    /// Creates a pool of `threads` threads (at least 1).
    public init(threads: Int) {
        threadCount = max(1, threads)
        pool = sq_pool_create(Int32(threadCount))
        defaultThreads = threadCount
    }

    deinit { sq_pool_destroy(pool) }

    /// Calls `body(task, thread)` for every task in 0..<count, spread over up to `threads` threads.
    /// Tasks may run in any order and concurrently; `thread` is in 0..<threadCount.
    /// Handing a closure to the C pool costs a heap-allocated context per call, so hot loops put their
    /// state in a `PoolJob` and call `run(tasks:threads:job:)` instead.
    public func run(tasks count: Int, threads: Int? = nil, _ body: (Int, Int) -> Void) {
        if count <= 0 { return }
        let t = min(threads ?? defaultThreads, threadCount)
        if count == 1 || t <= 1 {
            for i in 0..<count { body(i, 0) }
            return
        }
        withoutActuallyEscaping(body) { escaping in
            withUnsafePointer(to: escaping) { fn in
                sq_pool_run(
                    pool,
                    { ctx, task, thread in
                        ctx!.assumingMemoryBound(to: ((Int, Int) -> Void).self).pointee(Int(task), Int(thread))
                    }, UnsafeMutableRawPointer(mutating: fn), Int64(count), Int32(t))
            }
        }
    }

    /// Calls `job.run(task:thread:)` for every task in 0..<count, spread over up to `threads` threads,
    /// as `run(tasks:threads:_:)` does, without allocating: the pool reads the job in place (`inout`
    /// only pins its address; tasks must not mutate it). The way to hand hot loops to the pool.
    public func run<Job: PoolJob>(tasks count: Int, threads: Int? = nil, job: inout Job) {
        if count <= 0 { return }
        let t = min(threads ?? defaultThreads, threadCount)
        if count == 1 || t <= 1 {
            for i in 0..<count { job.run(task: i, thread: 0) }
            return
        }
        withUnsafeMutablePointer(to: &job) { p in
            var ref = PoolJobRef(job: UnsafeMutableRawPointer(p), type: Job.self)
            withUnsafeMutablePointer(to: &ref) {
                sq_pool_run(
                    pool,
                    { ctx, task, thread in
                        let ref = ctx!.assumingMemoryBound(to: PoolJobRef.self)
                        runPoolJob(ref.pointee.type, ref.pointee.job, Int(task), Int(thread))
                    }, $0, Int64(count), Int32(t))
            }
        }
    }

    /// Calls the C function `fn(context, task, thread)` for every task in 0..<count. Superseded by
    /// `run(tasks:threads:job:)`, which keeps C function pointers out of the API.
    @available(*, deprecated, message: "put the state in a PoolJob and call run(tasks:threads:job:)")
    public func run(tasks count: Int, threads: Int? = nil, context: UnsafeMutableRawPointer, _ fn: sq_task_fn) {
        if count <= 0 { return }
        let t = min(threads ?? defaultThreads, threadCount)
        if count == 1 || t <= 1 {
            for i in 0..<count { fn(context, Int64(i), 0) }
            return
        }
        sq_pool_run(pool, fn, context, Int64(count), Int32(t))
    }

    /// The block length `parallelFor` uses for `count` items: contiguous blocks at least
    /// `minBlock` long, about `blocksPerThread` per thread (`count` when one block). Tasks are then
    /// ceil(count / block).
    public func blockLength(_ count: Int, minBlock: Int = 1, blocksPerThread: Int = 1, threads: Int? = nil) -> Int {
        let t = min(threads ?? defaultThreads, threadCount)
        var blocks = max(1, t * blocksPerThread)
        blocks = min(blocks, max(1, count / max(1, minBlock)))
        return blocks <= 1 ? max(count, 1) : (count + blocks - 1) / blocks
    }

    /// Splits 0..<count into contiguous blocks (at least `minBlock` long, about `blocksPerThread`
    /// per thread) and calls `body(range, thread)` for each.
    public func parallelFor(
        _ count: Int, minBlock: Int = 1, blocksPerThread: Int = 1, threads: Int? = nil,
        _ body: (Range<Int>, Int) -> Void
    ) {
        if count <= 0 { return }
        let t = min(threads ?? defaultThreads, threadCount)
        let per = blockLength(count, minBlock: minBlock, blocksPerThread: blocksPerThread, threads: t)
        if per >= count { body(0..<count, 0); return }
        let n = (count + per - 1) / per
        run(tasks: n, threads: t) { i, thread in
            let lo = i * per
            body(lo..<min(count, lo + per), thread)
        }
    }
}

/// The state of a parallel loop and its body: `WorkerPool.run(tasks:threads:job:)` calls
/// `run(task:thread:)` once per task, concurrently, on the job in place.
///
/// Keep the inputs in stored properties (pointers, counts, class references); the pool never copies
/// or allocates, so a job on the caller's stack makes a dispatch allocation-free.
public protocol PoolJob {
    /// Runs task `task` (0..<count) on worker `thread` (0..<threadCount).
    func run(task: Int, thread: Int)
}

/// What the C pool's context points to while a `PoolJob` runs: the job and its type.
private struct PoolJobRef {
    let job: UnsafeMutableRawPointer
    let type: any PoolJob.Type
}

/// Runs task `task` of the job at `job`, of type J (opened from the `PoolJobRef`'s metatype).
private func runPoolJob<J: PoolJob>(_: J.Type, _ job: UnsafeMutableRawPointer, _ task: Int, _ thread: Int) {
    job.assumingMemoryBound(to: J.self).pointee.run(task: task, thread: thread)
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads an environment variable.
public func getenvString(_ name: String) -> String? {
    guard let p = getenv(name) else { return nil }
    return String(cString: p)
}
