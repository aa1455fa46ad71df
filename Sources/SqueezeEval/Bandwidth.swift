import CSqueezeKernels
import Foundation
import SqueezeCore

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
