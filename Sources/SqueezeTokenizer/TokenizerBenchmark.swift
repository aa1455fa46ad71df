import Foundation

/// Reading a text file that must be UTF-8.
public enum UTF8File {
    /// Reads a text file as UTF-8, failing with the file name and offset of the first invalid byte.
    public static func read(_ file: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: file) else {
            throw TokenizerError.unreadable(file: file, reason: "cannot open")
        }
        let bytes = [UInt8](data)
        if let bad = firstInvalidUTF8(bytes) { throw TokenizerError.invalidUTF8(file: file, byteOffset: bad) }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// Encoding throughput of one thread (`squeeze tokenize --bench`).
public enum TokenizerBenchmark {
    /// Encoding throughput of one thread.
    public struct Result: Sendable {
        public var bytes: Int
        public var tokens: Int
        /// Seconds of the first encode (cold word cache).
        public var firstSeconds: Double
        /// Median seconds over the repeats after the first.
        public var medianSeconds: Double
        public var megabytesPerSecond: Double { Double(bytes) / medianSeconds / 1e6 }
        public var tokensPerSecond: Double { Double(tokens) / medianSeconds }
    }

    /// Encodes `text` `repeats` times (at least twice) on the calling thread, without special tokens.
    public static func run(tokenizer: Tokenizer, text: String, repeats: Int = 5) -> Result {
        var times = [Double]()
        var count = 0
        for _ in 0..<max(repeats, 2) {
            let t0 = DispatchTime.now().uptimeNanoseconds
            count = tokenizer.encode(text, addSpecialTokens: false).count
            times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
        }
        let warm = times.dropFirst().sorted()
        return Result(
            bytes: text.utf8.count, tokens: count, firstSeconds: times[0], medianSeconds: warm[warm.count / 2])
    }
}
