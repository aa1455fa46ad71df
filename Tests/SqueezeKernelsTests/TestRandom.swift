/// Deterministic test data: a 64-bit linear congruential generator (Knuth's MMIX constants).
struct Rng {
    var s: UInt64
    /// The next value, uniform on a grid of step 1e-6 in [-1, 1].
    mutating func next() -> Float {
        s = s &* 6364136223846793005 &+ 1442695040888963407
        return Float(Int64(bitPattern: s >> 11) % 2_000_001 - 1_000_000) / 1_000_000
    }
}
