import Foundation
import CSqueezeKernels
import SqueezeCore

/// Measures this machine's memory bandwidth.
public enum MemoryBandwidth {
    /// Read bandwidth in GB/s: sum over a buffer much larger than the caches (`bytes`, default 512 MiB),
    /// best of `repeats`, spread over `threads` threads of the shared pool.
    public static func measure(bytes: Int = 512 << 20, repeats: Int = 5, threads: Int = 1) -> Double {
        let n = bytes / 4
        let buf = AlignedBuffer<Float>(count: n)
        let p = buf.pointer
        WorkerPool.shared.parallelFor(n, minBlock: 1 << 16, threads: threads) { r, _ in
            for i in r { p[i] = Float(i & 7) }
        }
        var best = Double.infinity
        let ones = AlignedBuffer<Float>(count: 1 << 16)
        for i in 0..<ones.count { ones[i] = 1 }
        for _ in 0..<repeats {
            let t0 = DispatchTime.now().uptimeNanoseconds
            WorkerPool.shared.parallelFor(n / ones.count, threads: threads) { r, _ in
                var s: Float = 0
                for b in r { s += sq_dot_f32(p + b * ones.count, ones.pointer, Int64(ones.count)) }
                if s == -1 { print(s) }
            }
            let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            best = min(best, dt)
        }
        return Double(n / ones.count * ones.count * 4) / best / 1e9
    }
}

/// Peak resident memory of this process in bytes (getrusage's maximum resident set size).
public func peakResidentBytes() -> Int {
    var u = rusage()
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &u)
    return Int(u.ru_maxrss) * 1024
}

/// Current resident memory in bytes (from /proc/self/statm), or nil where unavailable.
public func currentResidentBytes() -> Int? {
    guard let s = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return nil }
    let parts = s.split(separator: " ")
    guard parts.count > 1, let pages = Int(parts[1]) else { return nil }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}
