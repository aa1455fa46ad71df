import Foundation

/// Progress output on stderr: a rewritten line on a terminal, plain lines otherwise.
enum Progress {
    static let isTTY = isatty(STDERR_FILENO) != 0

    nonisolated(unsafe) static var lastPrint = 0.0

    /// Prints a progress line: on a terminal at most 10 times a second, otherwise every 5 seconds
    /// (and always when `force`).
    static func line(_ s: String, force: Bool = false) {
        let now = Date().timeIntervalSince1970
        if !force && now - lastPrint < (isTTY ? 0.1 : 5) { return }
        lastPrint = now
        if isTTY {
            FileHandle.standardError.write(Data(("\r\u{1B}[K" + s).utf8))
        } else {
            FileHandle.standardError.write(Data((s + "\n").utf8))
        }
    }

    static func done() { if isTTY { FileHandle.standardError.write(Data("\n".utf8)) } }

    static func eprint(_ s: String) { FileHandle.standardError.write(Data((s + "\n").utf8)) }

    static func eta(done: Int, total: Int, elapsed: Double) -> String {
        guard done > 0 else { return "?" }
        let rest = elapsed / Double(done) * Double(total - done)
        return rest >= 60 ? String(format: "%dm%02ds", Int(rest) / 60, Int(rest) % 60) : String(format: "%.0fs", rest)
    }
}
