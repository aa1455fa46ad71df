import SqueezeCore

/// How the symmetric outlier threshold T of a tensor is chosen (weights with |w| >= T are kept sparse).
public enum OutlierThreshold: Sendable, Equatable {
    /// No outliers.
    case none
    /// The reference's interquartile fences: T = max(|q1 - r IQR|, |q3 + r IQR|) (`--outlier-range r`).
    case range(Double)
    /// A target fraction of the tensor's weights (e.g. 0.004 for 0.40%, `--outlier-fraction`):
    /// T is the m-th largest |w| with m = round(fraction * count), solved per tensor.
    case fraction(Double)
    /// A given absolute threshold.
    case absolute(Float)
}

/// The sparse positions chosen for one tensor, and how they were chosen.
public struct OutlierSelection: Sendable, Equatable {
    /// One byte per weight, 1 where the weight is kept exactly in the sparse matrix.
    public var mask: [UInt8]
    /// Weights kept for their sensitivity.
    public var sensitiveCount: Int
    /// Weights kept as outliers (|w| >= T), whether or not also sensitive.
    public var outlierCount: Int
    /// Weights kept in all (the union).
    public var keptCount: Int
    /// The sensitivity above which weights are kept (nil if none are).
    public var sensitivityThreshold: Float?
    /// The outlier threshold T (nil if no outliers are selected).
    public var threshold: Float?
    /// The interquartile range multiplier r equivalent to T (solved by bisection in fraction mode).
    public var range: Double?
    /// First and third quartiles of the tensor's weights (linear interpolation, as numpy).
    public var q1: Float
    /// Third quartile.
    public var q3: Float
    /// Kept fraction of the tensor.
    public var keptFraction: Double { mask.isEmpty ? 0 : Double(keptCount) / Double(mask.count) }
}

/// Chooses a tensor's dense-and-sparse split: the most sensitive weights and the outliers.
public struct OutlierSelector: Sendable, Equatable {
    /// Fraction of weights kept for sensitivity (0.0005 = 0.05%); values strictly above the k-th
    /// largest sensitivity are kept, k = floor(fraction * count), as in the reference.
    public var sensitiveFraction: Double
    /// The outlier threshold rule.
    public var threshold: OutlierThreshold

    /// Creates a selector.
    public init(sensitiveFraction: Double = 0.0005, threshold: OutlierThreshold = .none) {
        self.sensitiveFraction = sensitiveFraction
        self.threshold = threshold
    }

    /// `--sparsity p` (a percentage): 0.05% sensitive (or all of p if smaller) plus the rest as outliers
    /// by fraction, so 0.45 means 0.05% sensitive plus 0.40% outliers.
    public static func sparsity(percent p: Double) -> OutlierSelector {
        let sens = min(0.05, max(p, 0))
        let out = max(p - sens, 0)
        return OutlierSelector(sensitiveFraction: sens / 100, threshold: out > 0 ? .fraction(out / 100) : .none)
    }

    /// Selects the kept positions of a tensor of `count` weights (sensitivity optional: without it no
    /// weights are kept for sensitivity).
    public func select(
        weights: UnsafePointer<Float>, sensitivity: UnsafePointer<Float>?, count n: Int,
        tensorName: String = ""
    ) throws(QuantError) -> OutlierSelection {
        guard sensitiveFraction >= 0, sensitiveFraction <= 1 else {
            throw .invalidOption("sensitive fraction \(sensitiveFraction) is outside [0, 1]")
        }
        for i in 0..<n where !weights[i].isFinite {
            throw .nonFiniteWeight(tensor: tensorName, row: -1, column: i, value: weights[i])
        }
        var mask = [UInt8](repeating: 0, count: n)
        var sensCount = 0
        var sensThr: Float?
        if let s = sensitivity, n > 0 {
            for i in 0..<n where !(s[i] >= 0) || !s[i].isFinite {
                throw .invalidSensitivity(tensor: tensorName, row: -1, column: i, value: s[i])
            }
            let kk = Int((sensitiveFraction * Double(n)).rounded(.down))
            if kk >= 1 {
                let key = orderStatisticKey(count: n, rank: n - kk) { monotoneKey(s[$0]) }
                let thr = floatFromMonotoneKey(key)
                sensThr = thr
                for i in 0..<n where s[i] > thr { mask[i] = 1; sensCount += 1 }
            }
        }
        // Quartiles with linear interpolation.
        var q1: Float = 0, q3: Float = 0
        if n > 0 {
            q1 = linearQuantile(weights, n, 0.25)
            q3 = linearQuantile(weights, n, 0.75)
        }
        let iqr = Double(q3) - Double(q1)
        func tOf(_ r: Double) -> Double { max(abs(Double(q1) - r * iqr), abs(Double(q3) + r * iqr)) }
        var t: Float?
        var r: Double?
        switch threshold {
        case .none: break
        case .range(let rr):
            guard rr.isFinite else { throw .invalidOption("outlier range \(rr) is not finite") }
            r = rr; t = Float(tOf(rr))
        case .absolute(let tt):
            guard tt.isFinite, tt >= 0 else { throw .invalidOption("outlier threshold \(tt) is invalid") }
            t = tt
        case .fraction(let f):
            guard f >= 0, f <= 1 else { throw .invalidOption("outlier fraction \(f) is outside [0, 1]") }
            let m = Int((f * Double(n)).rounded())
            if m >= 1 {
                let key = orderStatisticKey(count: n, rank: n - m) { weights[$0].bitPattern & 0x7FFF_FFFF }
                let tt = Float(bitPattern: key)
                t = tt
                // The equivalent interquartile multiplier: on r >= -1/2 the fences [q1 - r IQR, q3 + r IQR]
                // are ordered and grow with r, so T(r) is nondecreasing; bisect for T(r) = T.
                if iqr > 0, tOf(-0.5) <= Double(tt) {
                    var lo = -0.5, hi = 1.0
                    while tOf(hi) < Double(tt) && hi < 1e12 { hi *= 2 }
                    for _ in 0..<100 {
                        let mid = 0.5 * (lo + hi)
                        if tOf(mid) >= Double(tt) { hi = mid } else { lo = mid }
                    }
                    r = hi
                }
            }
        }
        var outCount = 0
        if let tt = t {
            for i in 0..<n where abs(weights[i]) >= tt {
                outCount += 1
                mask[i] = 1
            }
        }
        var kept = 0
        for i in 0..<n where mask[i] != 0 { kept += 1 }
        return OutlierSelection(
            mask: mask, sensitiveCount: sensCount, outlierCount: outCount, keptCount: kept,
            sensitivityThreshold: sensThr, threshold: t, range: r, q1: q1, q3: q3)
    }

    /// The quantile q of `n` values with numpy's default linear interpolation.
    public static func quantile(_ values: UnsafePointer<Float>, count n: Int, _ q: Double) -> Float {
        linearQuantile(values, n, q)
    }
}

/// The quantile q (linear interpolation between order statistics, as `numpy.quantile`).
func linearQuantile(_ v: UnsafePointer<Float>, _ n: Int, _ q: Double) -> Float {
    let pos = q * Double(n - 1)
    let lo = Int(pos.rounded(.down))
    let frac = pos - Double(lo)
    let a = Double(floatFromMonotoneKey(orderStatisticKey(count: n, rank: lo) { monotoneKey(v[$0]) }))
    if frac == 0 || lo + 1 >= n { return Float(a) }
    let b = Double(floatFromMonotoneKey(orderStatisticKey(count: n, rank: lo + 1) { monotoneKey(v[$0]) }))
    return Float(a + frac * (b - a))
}

/// The key of rank `rank` (0-based, ascending) among `count` UInt32 keys, by a two-pass radix
/// select on 16-bit halves; no copy of the data is made.
func orderStatisticKey(count n: Int, rank: Int, _ key: (Int) -> UInt32) -> UInt32 {
    precondition(n > 0 && rank >= 0 && rank < n)
    var hist = [Int](repeating: 0, count: 65536)
    for i in 0..<n { hist[Int(key(i) >> 16)] += 1 }
    var acc = 0, hiBucket = 0
    for b in 0..<65536 {
        if acc + hist[b] > rank { hiBucket = b; break }
        acc += hist[b]
    }
    let remaining = rank - acc
    for b in 0..<65536 { hist[b] = 0 }
    let hb = UInt32(hiBucket)
    for i in 0..<n {
        let k = key(i)
        if k >> 16 == hb { hist[Int(k & 0xFFFF)] += 1 }
    }
    acc = 0
    for b in 0..<65536 {
        if acc + hist[b] > remaining { return (hb << 16) | UInt32(b) }
        acc += hist[b]
    }
    fatalError("unreachable: rank beyond count")
}
