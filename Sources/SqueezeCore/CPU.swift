import CSqueezeKernels

/// The instruction-set level that kernels dispatch to at run time.
public enum ISALevel: Int, Sendable, CaseIterable, CustomStringConvertible {
    case scalar = 0, avx2 = 1, avx512 = 2

    /// The highest level this CPU supports.
    public static var supported: ISALevel { ISALevel(rawValue: Int(sq_isa_supported())) ?? .scalar }
    /// The level in use (the supported one unless lowered, e.g. by `SQUEEZE_ISA=scalar` or `--scalar`).
    public static var current: ISALevel {
        get { ISALevel(rawValue: Int(sq_isa())) ?? .scalar }
        set { _ = sq_set_isa(Int32(newValue.rawValue)) }
    }
    /// All levels this CPU can run.
    public static var available: [ISALevel] { allCases.filter { $0.rawValue <= supported.rawValue } }

    public var description: String {
        switch self {
        case .scalar: return "scalar"
        case .avx2: return "avx2"
        case .avx512: return "avx512"
        }
    }

    /// Runs `body` with the dispatch level set to `level`, then restores the previous level.
    public static func with<T>(_ level: ISALevel, _ body: () throws -> T) rethrows -> T {
        let old = current
        current = level
        defer { current = old }
        return try body()
    }
}

/// Feature flags of this CPU, as names ("avx2", "avx512f", "avx512vnni", ...).
public var cpuFeatureNames: [String] {
    let f = sq_cpu_features()
    let names: [(UInt32, String)] = [
        (UInt32(SQ_CPU_AVX2), "avx2"), (UInt32(SQ_CPU_FMA), "fma"), (UInt32(SQ_CPU_F16C), "f16c"),
        (UInt32(SQ_CPU_AVX512F), "avx512f"), (UInt32(SQ_CPU_AVX512BW), "avx512bw"),
        (UInt32(SQ_CPU_AVX512VL), "avx512vl"),
        (UInt32(SQ_CPU_AVX512VBMI), "avx512vbmi"), (UInt32(SQ_CPU_AVX512VNNI), "avx512vnni"),
        (UInt32(SQ_CPU_AVX512BF16), "avx512bf16"), (UInt32(SQ_CPU_AVXVNNI), "avxvnni"),
    ]
    return names.filter { f & $0.0 != 0 }.map { $0.1 }
}
