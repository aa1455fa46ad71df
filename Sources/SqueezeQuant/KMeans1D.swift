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
    /// Radix sort buffers: items are (monotone key << 32) | column.
    let keysA: UnsafeMutablePointer<UInt64>
    let keysB: UnsafeMutablePointer<UInt64>
    /// The sorted items of the current row (points into keysA or keysB).
    var sorted: UnsafeMutablePointer<UInt64>
    /// k-means weight per column of the current row.
    let rawWeight: UnsafeMutablePointer<Float>
    /// Sorted distinct values of the row (all included points) and their merged weights.
    let ux: UnsafeMutablePointer<Double>
    let uw: UnsafeMutablePointer<Double>
    /// The positive-weight points handed to the engines (alias ux/uw when all weights are positive).
    var px: UnsafeMutablePointer<Double>
    var pw: UnsafeMutablePointer<Double>
    let pxStore: UnsafeMutablePointer<Double>
    let pwStore: UnsafeMutablePointer<Double>
    /// Prefix sums (n + 1) of weight, weight * (x - shift), weight * (x - shift)^2.
    let pW: UnsafeMutablePointer<Double>
    let pS: UnsafeMutablePointer<Double>
    let pQ: UnsafeMutablePointer<Double>
    /// Prefix sums at the coarse candidate borders (Lloyd's start).
    let cW: UnsafeMutablePointer<Double>
    let cS: UnsafeMutablePointer<Double>
    let cQ: UnsafeMutablePointer<Double>
    let coarseCapacity: Int
    let prev: UnsafeMutablePointer<Double>
    let cur: UnsafeMutablePointer<Double>
    /// Argmin split points, (k + 1) layers of (capacity + 1).
    let arg: UnsafeMutablePointer<Int32>
    /// Output centroids (ascending), k of them.
    let centroids: UnsafeMutablePointer<Double>
    let borders: UnsafeMutablePointer<Int>
    let hist: UnsafeMutablePointer<Int32>
    var shift: Double = 0

    init(capacity: Int, k: Int) {
        self.capacity = max(capacity, 1)
        self.k = k
        let c = self.capacity
        keysA = .allocate(capacity: c)
        keysB = .allocate(capacity: c)
        sorted = keysA
        rawWeight = .allocate(capacity: c)
        ux = .allocate(capacity: c)
        uw = .allocate(capacity: c)
        pxStore = .allocate(capacity: c)
        pwStore = .allocate(capacity: c)
        px = pxStore; pw = pwStore
        pW = .allocate(capacity: c + 1)
        pS = .allocate(capacity: c + 1)
        pQ = .allocate(capacity: c + 1)
        coarseCapacity = max(8 * k, 64)
        cW = .allocate(capacity: coarseCapacity + 1)
        cS = .allocate(capacity: coarseCapacity + 1)
        cQ = .allocate(capacity: coarseCapacity + 1)
        prev = .allocate(capacity: c + 1)
        cur = .allocate(capacity: c + 1)
        arg = .allocate(capacity: (k + 1) * (c + 1))
        centroids = .allocate(capacity: max(k, 1))
        borders = .allocate(capacity: k + 1)
        hist = .allocate(capacity: 3 * 2048)
    }

    deinit {
        keysA.deallocate(); keysB.deallocate(); rawWeight.deallocate()
        ux.deallocate(); uw.deallocate(); pxStore.deallocate(); pwStore.deallocate()
        pW.deallocate(); pS.deallocate(); pQ.deallocate(); cW.deallocate(); cS.deallocate(); cQ.deallocate()
        prev.deallocate(); cur.deallocate()
        arg.deallocate(); centroids.deallocate(); borders.deallocate()
        hist.deallocate()
    }

    /// LSD radix sort of the `n` items in keysA by their upper 32 bits (3 passes of 11, 11 and 10
    /// bits, skipping passes where all items share the digit). Sets `sorted`.
    func radixSort(_ n: Int) {
        var src = keysA, dst = keysB
        hist.initialize(repeating: 0, count: 3 * 2048)
        for i in 0..<n {
            let key = UInt32(truncatingIfNeeded: src[i] >> 32)
            hist[Int(key & 0x7FF)] &+= 1
            hist[2048 + Int((key >> 11) & 0x7FF)] &+= 1
            hist[4096 + Int(key >> 22)] &+= 1
        }
        for pass in 0..<3 {
            let h = hist + pass * 2048
            let shiftBits = UInt64(32 + 11 * pass)
            let b0 = Int((src[0] >> shiftBits) & 0x7FF)
            if Int(h[b0]) == n { continue }
            var sum: Int32 = 0
            for b in 0..<2048 { let c = h[b]; h[b] = sum; sum &+= c }
            for i in 0..<n {
                let item = src[i]
                let b = Int((item >> shiftBits) & 0x7FF)
                dst[Int(h[b])] = item
                h[b] &+= 1
            }
            swap(&src, &dst)
        }
        sorted = src
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
        dpBorders(W: pW, S: pS, Q: pQ, n: n, kk: kk)
        for j in 0..<kk { centroids[j] = segmentMean(borders[j], borders[j + 1]) }
    }

    /// The optimal partition of n points (given by prefix sums W, S, Q of n + 1 entries, all
    /// segment weights positive) into kk contiguous segments: writes borders[0...kk].
    ///
    /// D_l(i) = min over j of D_{l-1}(j) + cost(j, i), cost from the prefix sums in O(1). The cost
    /// satisfies the quadrangle inequality, so the leftmost argmin is nondecreasing in i and each
    /// layer is filled by divide and conquer in O(n log n).
    func dpBorders(
        W: UnsafeMutablePointer<Double>, S: UnsafeMutablePointer<Double>,
        Q: UnsafeMutablePointer<Double>, n: Int, kk: Int
    ) {
        borders[0] = 0; borders[kk] = n
        if kk == 1 { return }
        let stride = n + 1
        for i in 1...n {
            let s = S[i]
            prev[i] = Q[i] - s * s / W[i]
        }
        if kk >= 3 {
            for l in 2..<kk {
                fillLayer(
                    W: W, S: S, Q: Q, l: l, kk: kk, lo: l, hi: n - (kk - l), optLo: l - 1,
                    optHi: n - (kk - l) - 1, stride: stride)
                (prev + l).update(from: cur + l, count: n - (kk - l) - l + 1)
            }
        }
        var best = Double.infinity, bj = kk - 1
        let Wn = W[n], Sn = S[n], Qn = Q[n]
        for j in (kk - 1)..<n {
            let dw = Wn - W[j], ds = Sn - S[j]
            let c = prev[j] + (Qn - Q[j]) - ds * ds / dw
            if c < best { best = c; bj = j }
        }
        borders[kk - 1] = bj
        var l = kk - 1
        while l >= 2 {
            borders[l - 1] = Int(arg[l * stride + borders[l]])
            l -= 1
        }
    }

    /// Divide and conquer over one DP layer: cur[i] = min_j prev[j] + cost(j, i), i in lo...hi.
    private func fillLayer(
        W: UnsafeMutablePointer<Double>, S: UnsafeMutablePointer<Double>,
        Q: UnsafeMutablePointer<Double>, l: Int, kk: Int, lo: Int, hi: Int, optLo: Int, optHi: Int,
        stride: Int
    ) {
        if lo > hi { return }
        let mid = (lo + hi) >> 1
        let P = prev
        let Wm = W[mid], Sm = S[mid], Qm = Q[mid]
        // Besides the divide-and-conquer window, the last cluster of l clusters covering `mid` points
        // starts no earlier than that of l - 1 clusters (the argmins are monotone in l too).
        let jStart = l >= 3 && mid <= stride - 1 - (kk - l + 1) ? max(optLo, Int(arg[(l - 1) * stride + mid])) : optLo
        var best = Double.infinity, bj = jStart
        let jEnd = min(mid - 1, optHi)
        var j = jStart
        while j <= jEnd {
            let dw = Wm - W[j], ds = Sm - S[j]
            let c = P[j] + (Qm - Q[j]) - ds * ds / dw
            if c < best { best = c; bj = j }
            j += 1
        }
        cur[mid] = best
        arg[l * stride + mid] = Int32(truncatingIfNeeded: bj)
        fillLayer(W: W, S: S, Q: Q, l: l, kk: kk, lo: lo, hi: mid - 1, optLo: optLo, optHi: bj, stride: stride)
        fillLayer(W: W, S: S, Q: Q, l: l, kk: kk, lo: mid + 1, hi: hi, optLo: bj, optHi: optHi, stride: stride)
    }

    /// Weighted Lloyd on the `n` sorted, distinct, positive-weight points in `px`/`pw`
    /// (n >= kk >= 1); writes kk ascending centroids.
    ///
    /// Start: the optimal partition whose borders are restricted to m = min(n, 8 kk) equally spaced
    /// candidate positions (a small exact DP on the prefix sums), which puts Lloyd in the basin of
    /// the global optimum. Then at most `maxIterations` iterations, each moving every border to
    /// the midpoint of its centroids (found by galloping search from the old border) and every
    /// centroid to its segment's weighted mean, until no border moves.
    func lloyd(n: Int, kk: Int, maxIterations: Int) {
        prefixSums(n)
        let m = min(n, 8 * kk, coarseCapacity)
        if m <= kk || m == n {
            dpBorders(W: pW, S: pS, Q: pQ, n: n, kk: kk)
        } else {
            for t in 0...m {
                let p = t * n / m
                cW[t] = pW[p]; cS[t] = pS[p]; cQ[t] = pQ[p]
            }
            dpBorders(W: cW, S: cS, Q: cQ, n: m, kk: kk)
            for j in 0...kk { borders[j] = borders[j] * n / m }
        }
        for j in 0..<kk { centroids[j] = segmentMean(borders[j], borders[j + 1]) }
        var iteration = 0
        while iteration < maxIterations {
            iteration += 1
            var changed = false
            for j in 1..<kk {
                let mid = 0.5 * (centroids[j - 1] + centroids[j])
                // First index with px >= mid, galloping from the old border.
                var b = borders[j]
                if b < n && px[b] < mid {
                    var step = 1
                    var lo = b + 1, hi = b + 1
                    while hi < n && px[hi] < mid { lo = hi + 1; hi = min(n, hi + step); step <<= 1 }
                    hi = min(hi, n)
                    while lo < hi { let t = (lo + hi) >> 1; if px[t] < mid { lo = t + 1 } else { hi = t } }
                    b = lo
                } else if b > 0 && px[b - 1] >= mid {
                    var step = 1
                    var hi = b - 1, lo = b - 1
                    while lo > 0 && px[lo - 1] >= mid { hi = lo - 1; lo = max(0, lo - step); step <<= 1 }
                    // px[lo - 1] < mid (or lo == 0), px[hi] >= mid
                    while lo < hi { let t = (lo + hi) >> 1; if px[t] < mid { lo = t + 1 } else { hi = t } }
                    b = lo
                }
                if b != borders[j] { borders[j] = b; changed = true }
            }
            if !changed { break }
            for j in 0..<kk {
                let a = borders[j], e = borders[j + 1]
                if e > a {
                    let dw = pW[e] - pW[a]
                    if dw > 0 { centroids[j] = (pS[e] - pS[a]) / dw + shift }
                }
            }
        }
    }
}
