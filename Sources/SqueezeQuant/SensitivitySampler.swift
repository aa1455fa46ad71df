import Foundation

/// CPython's `random` module generator (MT19937), seeded like `random.seed(n)` for a non-negative
/// integer n, with `getrandbits` and `randint` drawing exactly as CPython 3 does. This lets the
/// calibration windows be the very windows SqueezeLLM's reference draws (`random.seed(seed)`,
/// `start = random.randint(0, N - seqlen - 1)` per sample).
public struct PythonRandom: Sendable {
    private var mt = [UInt32](repeating: 0, count: 624)
    private var index = 625

    /// `random.seed(seed)`: init_by_array over the 32-bit words of the seed, least significant first.
    public init(seed: UInt64) {
        var key: [UInt32] = []
        var s = seed
        repeat { key.append(UInt32(truncatingIfNeeded: s)); s >>= 32 } while s != 0
        initGenrand(19_650_218)
        var i = 1, j = 0
        for _ in 0..<max(624, key.count) {
            let prev = mt[i - 1] ^ (mt[i - 1] >> 30)
            mt[i] = (mt[i] ^ (prev &* 1_664_525)) &+ key[j] &+ UInt32(j)
            i += 1; j += 1
            if i >= 624 { mt[0] = mt[623]; i = 1 }
            if j >= key.count { j = 0 }
        }
        for _ in 0..<623 {
            let prev = mt[i - 1] ^ (mt[i - 1] >> 30)
            mt[i] = (mt[i] ^ (prev &* 1_566_083_941)) &- UInt32(i)
            i += 1
            if i >= 624 { mt[0] = mt[623]; i = 1 }
        }
        mt[0] = 0x8000_0000
        index = 624
    }

    private mutating func initGenrand(_ s: UInt32) {
        mt[0] = s
        for i in 1..<624 { mt[i] = 1_812_433_253 &* (mt[i - 1] ^ (mt[i - 1] >> 30)) &+ UInt32(i) }
        index = 624
    }

    /// The next 32-bit output (genrand_uint32).
    public mutating func next32() -> UInt32 {
        if index >= 624 {
            for k in 0..<624 {
                let y = (mt[k] & 0x8000_0000) | (mt[(k + 1) % 624] & 0x7fff_ffff)
                mt[k] = mt[(k + 397) % 624] ^ (y >> 1) ^ ((y & 1) != 0 ? 0x9908_b0df : 0)
            }
            index = 0
        }
        var y = mt[index]
        index += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9d2c_5680
        y ^= (y << 15) & 0xefc6_0000
        y ^= y >> 18
        return y
    }

    /// `random.getrandbits(k)` for 1 <= k <= 64 (32-bit words filled from the least significant).
    public mutating func getrandbits(_ k: Int) -> UInt64 {
        precondition(k >= 1 && k <= 64, "getrandbits supports 1...64 bits")
        if k <= 32 { return UInt64(next32() >> UInt32(32 - k)) }
        let lo = UInt64(next32())
        let hi = UInt64(next32() >> UInt32(64 - k))
        return lo | (hi << 32)
    }

    /// `random.randint(a, b)`: a + _randbelow(b - a + 1), by rejection on getrandbits(bit_length).
    public mutating func randint(_ a: Int, _ b: Int) -> Int {
        precondition(b >= a, "randint needs a <= b")
        let n = UInt64(b - a + 1)
        let k = 64 - n.leadingZeroBitCount
        var r = getrandbits(k)
        while r >= n { r = getrandbits(k) }
        return a + Int(r)
    }
}

/// The calibration windows: `samples` random starts into a token stream, seeded.
public enum WindowSampler {
    /// The start of each window, as SqueezeLLM's reference draws them: Python `random.seed(seed)`,
    /// then `random.randint(0, tokenCount - seqlen - 1)` per sample. Throws when the stream is not
    /// longer than one window.
    public static func starts(tokenCount: Int, seqlen: Int, samples: Int, seed: UInt64) throws -> [Int] {
        guard seqlen >= 2 else {
            throw SensitivityError.invalidOption(name: "seqlen", detail: "must be at least 2, got \(seqlen)")
        }
        guard samples >= 1 else {
            throw SensitivityError.invalidOption(name: "samples", detail: "must be at least 1, got \(samples)")
        }
        guard tokenCount > seqlen else {
            throw SensitivityError.calibrationTooShort(tokens: tokenCount, seqlen: seqlen)
        }
        var rng = PythonRandom(seed: seed)
        return (0..<samples).map { _ in rng.randint(0, tokenCount - seqlen - 1) }
    }
}
