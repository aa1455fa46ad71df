import SqueezeCore

/// The 1-D weighted k-means engine used for each output row (`--kmeans optimal|lloyd`).
public enum KMeansEngine: String, CaseIterable, Sendable {
    /// Exact weighted 1-D k-means: a dynamic programme over the sorted row whose optimal split
    /// points are monotone, filled by divide and conquer (O(k n log n)). Deterministic, and no
    /// clustering has a lower weighted error.
    case optimal
    /// Weighted Lloyd iterations on the sorted row (prefix sums, binary-searched cluster borders),
    /// started from weighted quantiles, at most `maxIterations` iterations. Fast, locally optimal.
    case lloyd
}

/// Maps a float to a UInt32 whose unsigned order is the float's numeric order (-0 sorts before +0).
@inline(__always) func monotoneKey(_ x: Float) -> UInt32 {
    let b = x.bitPattern
    return (b & 0x8000_0000) != 0 ? ~b : (b | 0x8000_0000)
}

/// Inverse of `monotoneKey`.
@inline(__always) func floatFromMonotoneKey(_ k: UInt32) -> Float {
    (k & 0x8000_0000) != 0 ? Float(bitPattern: k & 0x7FFF_FFFF) : Float(bitPattern: ~k)
}

/// Per-thread scratch for one row of weighted 1-D k-means, sized once for rows of up to
/// `capacity` values and `k` clusters, so that no allocation happens per row.
final class KMeansWorkspace {
    let capacity: Int
    let k: Int
    let keysA: UnsafeMutablePointer<UInt64>
    let keysB: UnsafeMutablePointer<UInt64>
    let rawWeight: UnsafeMutablePointer<Float>
    /// Sorted distinct values of the row (all included points) and their merged weights.
    let ux: UnsafeMutablePointer<Double>
    let uw: UnsafeMutablePointer<Double>
    /// The positive-weight subset handed to the engines.
    let px: UnsafeMutablePointer<Double>
    let pw: UnsafeMutablePointer<Double>
    /// Prefix sums (n + 1) of weight, weight * (x - shift), weight * (x - shift)^2.
    let pW: UnsafeMutablePointer<Double>
    let pS: UnsafeMutablePointer<Double>
    let pQ: UnsafeMutablePointer<Double>
    let prev: UnsafeMutablePointer<Double>
    let cur: UnsafeMutablePointer<Double>
    /// Argmin split points, (k + 1) layers of (capacity + 1).
    let arg: UnsafeMutablePointer<Int32>
    /// Output centroids (ascending), k of them.
    let centroids: UnsafeMutablePointer<Double>
    let borders: UnsafeMutablePointer<Int>
    let oldBorders: UnsafeMutablePointer<Int>
    let hist: UnsafeMutablePointer<Int32>
    var shift: Double = 0

    init(capacity: Int, k: Int) {
        self.capacity = max(capacity, 1)
        self.k = k
        let c = self.capacity
        keysA = .allocate(capacity: c)
        keysB = .allocate(capacity: c)
        rawWeight = .allocate(capacity: c)
        ux = .allocate(capacity: c)
        uw = .allocate(capacity: c)
        px = .allocate(capacity: c)
        pw = .allocate(capacity: c)
        pW = .allocate(capacity: c + 1)
        pS = .allocate(capacity: c + 1)
        pQ = .allocate(capacity: c + 1)
        prev = .allocate(capacity: c + 1)
        cur = .allocate(capacity: c + 1)
        arg = .allocate(capacity: (k + 1) * (c + 1))
        centroids = .allocate(capacity: max(k, 1))
        borders = .allocate(capacity: k + 1)
        oldBorders = .allocate(capacity: k + 1)
        hist = .allocate(capacity: 4 * 256)
    }

    deinit {
        keysA.deallocate(); keysB.deallocate(); rawWeight.deallocate()
        ux.deallocate(); uw.deallocate(); px.deallocate(); pw.deallocate()
        pW.deallocate(); pS.deallocate(); pQ.deallocate(); prev.deallocate(); cur.deallocate()
        arg.deallocate(); centroids.deallocate(); borders.deallocate(); oldBorders.deallocate()
        hist.deallocate()
    }

    /// LSD radix sort of `n` items by their upper 32 bits (4 byte passes, skipping passes where all
    /// items share the byte). Returns the buffer holding the sorted items.
    func radixSort(_ n: Int) -> UnsafeMutablePointer<UInt64> {
        var src = keysA, dst = keysB
        hist.initialize(repeating: 0, count: 4 * 256)
        for i in 0..<n {
            let key = UInt32(truncatingIfNeeded: src[i] >> 32)
            hist[Int(key & 0xFF)] &+= 1
            hist[256 + Int((key >> 8) & 0xFF)] &+= 1
            hist[512 + Int((key >> 16) & 0xFF)] &+= 1
            hist[768 + Int(key >> 24)] &+= 1
        }
        for pass in 0..<4 {
            let h = hist + pass * 256
            let shiftBits = UInt64(32 + 8 * pass)
            // Skip a pass where every item falls in one bucket.
            let b0 = Int((src[0] >> shiftBits) & 0xFF)
            if Int(h[b0]) == n { continue }
            var sum: Int32 = 0
            for b in 0..<256 { let c = h[b]; h[b] = sum; sum &+= c }
            for i in 0..<n {
                let item = src[i]
                let b = Int((item >> shiftBits) & 0xFF)
                dst[Int(h[b])] = item
                h[b] &+= 1
            }
            swap(&src, &dst)
        }
        return src
    }

    /// Fills the prefix sums over the first `n` entries of `px`/`pw`, centred on a middle value.
    func prefixSums(_ n: Int) {
        shift = px[n / 2]
        var w = 0.0, s = 0.0, q = 0.0
        pW[0] = 0; pS[0] = 0; pQ[0] = 0
        for i in 0..<n {
            let f = pw[i]
            let d = px[i] - shift
            w += f; s += f * d; q += f * d * d
            pW[i + 1] = w; pS[i + 1] = s; pQ[i + 1] = q
        }
    }

    @inline(__always) func segmentMean(_ a: Int, _ b: Int) -> Double {
        let dw = pW[b] - pW[a]
        if dw > 0 { return (pS[b] - pS[a]) / dw + shift }
        var s = 0.0
        for i in a..<b { s += px[i] }
        return s / Double(max(b - a, 1))
    }

    /// Exact weighted k-means of the `n` sorted, distinct, positive-weight points in `px`/`pw`
    /// into `kk` clusters (n >= kk >= 1); writes the kk centroids in ascending order.
    func optimal(n: Int, kk: Int) {
        prefixSums(n)
        if kk == 1 { centroids[0] = segmentMean(0, n); return }
        let stride = n + 1
        // Layer 1: one cluster over the first i points.
        let W = pW, S = pS, Q = pQ
        for i in 1...n {
            let s = S[i]
            prev[i] = Q[i] - s * s / W[i]
        }
        if kk >= 3 {
            for l in 2..<kk {
                fillLayer(l: l, lo: l, hi: n - (kk - l), optLo: l - 1, optHi: n - (kk - l) - 1, stride: stride)
                // Swap prev and cur contents for the valid range.
                (prev + l).update(from: cur + l, count: n - (kk - l) - l + 1)
            }
        }
        // Last layer: only i = n.
        var best = Double.infinity, bj = kk - 1
        let Wn = W[n], Sn = S[n], Qn = Q[n]
        for j in (kk - 1)..<n {
            let dw = Wn - W[j], ds = Sn - S[j]
            let c = prev[j] + (Qn - Q[j]) - ds * ds / dw
            if c < best { best = c; bj = j }
        }
        // Backtrack.
        var end = n
        var start = bj
        centroids[kk - 1] = segmentMean(start, end)
        var l = kk - 1
        while l >= 1 {
            end = start
            start = l == 1 ? 0 : Int(arg[l * stride + end])
            centroids[l - 1] = segmentMean(start, end)
            l -= 1
        }
    }

    /// Divide and conquer over one DP layer: cur[i] = min_j prev[j] + cost(j, i), i in lo...hi.
    private func fillLayer(l: Int, lo: Int, hi: Int, optLo: Int, optHi: Int, stride: Int) {
        if lo > hi { return }
        let mid = (lo + hi) >> 1
        let W = pW, S = pS, Q = pQ, P = prev
        let Wm = W[mid], Sm = S[mid], Qm = Q[mid]
        var best = Double.infinity, bj = optLo
        let jEnd = min(mid - 1, optHi)
        var j = optLo
        while j <= jEnd {
            let dw = Wm - W[j], ds = Sm - S[j]
            let c = P[j] + (Qm - Q[j]) - ds * ds / dw
            if c < best { best = c; bj = j }
            j += 1
        }
        cur[mid] = best
        arg[l * stride + mid] = Int32(truncatingIfNeeded: bj)
        fillLayer(l: l, lo: lo, hi: mid - 1, optLo: optLo, optHi: bj, stride: stride)
        fillLayer(l: l, lo: mid + 1, hi: hi, optLo: bj, optHi: optHi, stride: stride)
    }

    /// Weighted Lloyd on the `n` sorted, distinct, positive-weight points in `px`/`pw`
    /// (n >= kk >= 1), from weighted-quantile starting centroids; writes kk ascending centroids.
    func lloyd(n: Int, kk: Int, maxIterations: Int) {
        prefixSums(n)
        let total = pW[n]
        // Weighted quantile start, forced to distinct points.
        var prevIdx = -1
        for j in 0..<kk {
            let target = (Double(j) + 0.5) / Double(kk) * total
            // First i with pW[i + 1] > target.
            var lo = 0, hi = n - 1
            while lo < hi {
                let m = (lo + hi) >> 1
                if pW[m + 1] > target { hi = m } else { lo = m + 1 }
            }
            var idx = max(lo, prevIdx + 1)
            idx = min(idx, n - kk + j)
            centroids[j] = px[idx]
            prevIdx = idx
        }
        for j in 0...kk { oldBorders[j] = -1 }
        borders[0] = 0; borders[kk] = n
        var iteration = 0
        while iteration < maxIterations {
            iteration += 1
            var changed = false
            for j in 1..<kk {
                let mid = 0.5 * (centroids[j - 1] + centroids[j])
                // First index with px >= mid.
                var lo = 0, hi = n
                while lo < hi {
                    let m = (lo + hi) >> 1
                    if px[m] < mid { lo = m + 1 } else { hi = m }
                }
                borders[j] = lo
                if lo != oldBorders[j] { changed = true }
            }
            if !changed { break }
            for j in 0..<kk {
                oldBorders[j] = borders[j]
                let a = borders[j], b = borders[j + 1]
                if b > a {
                    let dw = pW[b] - pW[a]
                    if dw > 0 { centroids[j] = (pS[b] - pS[a]) / dw + shift }
                }
            }
        }
    }
}
