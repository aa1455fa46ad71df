import CSqueezeKernels

/// The instruction-set level that kernels dispatch to at run time: scalar, or the SIMD levels of this
/// CPU's architecture (x86-64: AVX2, AVX-512; ARM64: NEON, NEON with the dot-product extension, NEON
/// with dot product and int8 matrix multiply).
public enum ISALevel: Int, Sendable, CaseIterable, CustomStringConvertible {
    case scalar = 0, avx2 = 1, avx512 = 2, neon = 3, dotprod = 4, i8mm = 5

    /// The highest level this CPU supports.
    public static var supported: ISALevel { ISALevel(rawValue: Int(sq_isa_supported())) ?? .scalar }
    /// The level in use (the supported one unless lowered, e.g. by `SQUEEZE_ISA=scalar` or `--scalar`).
    public static var current: ISALevel {
        get { ISALevel(rawValue: Int(sq_isa())) ?? .scalar }
        set { _ = sq_set_isa(Int32(newValue.rawValue)) }
    }
    /// All levels this CPU can run.
    public static var available: [ISALevel] {
        allCases.filter { $0 == .scalar || ($0.isARM == supported.isARM && $0.rawValue <= supported.rawValue) }
    }

    /// Whether this is an ARM64 level (NEON and above).
    var isARM: Bool { rawValue >= ISALevel.neon.rawValue }

    public var description: String {
        switch self {
        case .scalar: return "scalar"
        case .avx2: return "avx2"
        case .avx512: return "avx512"
        case .neon: return "neon"
        case .dotprod: return "dotprod"
        case .i8mm: return "i8mm"
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

/// Feature flags of this CPU, as names ("avx2", "avx512f", "avx512vnni", ...; ARM64: "neon",
/// "dotprod", "i8mm", "fp16").
public var cpuFeatureNames: [String] {
    let f = sq_cpu_features()
    let names: [(UInt32, String)] = [
        (UInt32(SQ_CPU_AVX2), "avx2"), (UInt32(SQ_CPU_FMA), "fma"), (UInt32(SQ_CPU_F16C), "f16c"),
        (UInt32(SQ_CPU_AVX512F), "avx512f"), (UInt32(SQ_CPU_AVX512BW), "avx512bw"),
        (UInt32(SQ_CPU_AVX512VL), "avx512vl"),
        (UInt32(SQ_CPU_AVX512VBMI), "avx512vbmi"), (UInt32(SQ_CPU_AVX512VNNI), "avx512vnni"),
        (UInt32(SQ_CPU_AVX512BF16), "avx512bf16"), (UInt32(SQ_CPU_AVXVNNI), "avxvnni"),
        (UInt32(SQ_CPU_NEON), "neon"), (UInt32(SQ_CPU_DOTPROD), "dotprod"), (UInt32(SQ_CPU_I8MM), "i8mm"),
        (UInt32(SQ_CPU_FP16), "fp16"),
    ]
    return names.filter { f & $0.0 != 0 }.map { $0.1 }
}
