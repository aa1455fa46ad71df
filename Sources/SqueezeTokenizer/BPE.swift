import Foundation

/// A BPE model: byte-level (GPT-2 style, every byte has a token) or character-level with
/// optional byte fallback (SentencePiece style, `<0xNN>` tokens). Merges are ranked pairs of
/// ids; SentencePiece score-based merging is expressed as ranks too (higher score first).
final class BPEModel: @unchecked Sendable {
    /// Token strings by id (as stored in the vocabulary; byte-level tokens in the GPT-2 alphabet).
    let idToToken: [String]
    /// Token string → id.
    let vocab: Vocab
    /// Packed pair (left << 32 | right) → packed (rank << 32 | new id).
    let merges: [UInt64: UInt64]
    let byteLevel: Bool
    let byteFallback: Bool
    let unkId: Int32?
    let fuseUnk: Bool
    let ignoreMerges: Bool
    /// Byte-level: id of each byte's character. Byte fallback: id of `<0xNN>` (or -1).
    let byteIds: [Int32]
    /// Character-level: single-scalar tokens.
    let charIds: [UInt32: Int32]

    private var cache: [ArraySlice<UInt8>: [Int32]] = [:]
    private let lock = NSLock()
    private static let cacheLimit = 200_000

    init(
        idToToken: [String], vocab: Vocab, merges: [UInt64: UInt64], byteLevel: Bool,
        byteFallback: Bool, unkId: Int32?, fuseUnk: Bool, ignoreMerges: Bool
    ) {
        self.idToToken = idToToken
        self.vocab = vocab
        self.merges = merges
        self.byteLevel = byteLevel
        self.byteFallback = byteFallback
        self.unkId = unkId
        self.fuseUnk = fuseUnk
        self.ignoreMerges = ignoreMerges
        var byteIds = [Int32](repeating: -1, count: 256)
        var charIds: [UInt32: Int32] = [:]
        if byteLevel {
            for b in 0..<256 {
                byteIds[b] = vocab[String(Unicode.Scalar(ByteLevelMap.byteToScalar[b])!)] ?? -1
            }
        } else {
            for b in 0..<256 {
                byteIds[b] = vocab[String(format: "<0x%02X>", b)] ?? -1
            }
            for (tok, id) in vocab {
                let us = tok.unicodeScalars
                if us.count == 1 { charIds[us.first!.value] = id }
            }
        }
        self.byteIds = byteIds
        self.charIds = charIds
    }

    @inline(__always) static func pairKey(_ a: Int32, _ b: Int32) -> UInt64 {
        (UInt64(UInt32(bitPattern: a)) << 32) | UInt64(UInt32(bitPattern: b))
    }

    /// Encodes one pre-tokenized piece (raw UTF-8 bytes; byte-level mapping is applied here)
    /// and appends its ids.
    func encode(_ piece: ArraySlice<UInt8>, into out: inout [Int]) {
        if piece.isEmpty { return }
        lock.lock()
        if let hit = cache[piece] {
            lock.unlock()
            for id in hit { out.append(Int(id)) }
            return
        }
        lock.unlock()
        let ids = encodeUncached(piece)
        lock.lock()
        if cache.count >= BPEModel.cacheLimit { cache.removeAll(keepingCapacity: true) }
        cache[ArraySlice(Array(piece))] = ids
        lock.unlock()
        for id in ids { out.append(Int(id)) }
    }

    private func encodeUncached(_ piece: ArraySlice<UInt8>) -> [Int32] {
        if ignoreMerges {
            let s =
                byteLevel
                ? String(decoding: ByteLevelMap.encode(piece), as: UTF8.self)
                : String(decoding: piece, as: UTF8.self)
            if let id = vocab[s] { return [id] }
        }
        var syms = [Int32](); syms.reserveCapacity(piece.count)
        if byteLevel {
            for b in piece {
                let id = byteIds[Int(b)]
                if id >= 0 { syms.append(id) } else if let u = unkId { syms.append(u) }
            }
        } else {
            var lastWasUnk = false
            for scalar in String(decoding: piece, as: UTF8.self).unicodeScalars {
                if let id = charIds[scalar.value] { syms.append(id); lastWasUnk = false; continue }
                if byteFallback {
                    let bs = Array(String(scalar).utf8)
                    if bs.allSatisfy({ byteIds[Int($0)] >= 0 }) {
                        for b in bs { syms.append(byteIds[Int(b)]) }
                        lastWasUnk = false
                        continue
                    }
                }
                if let u = unkId {
                    if !(fuseUnk && lastWasUnk) { syms.append(u) }
                    lastWasUnk = true
                }
            }
        }
        if syms.count < 2 { return syms }
        return syms.count <= 48 ? mergeSmall(syms) : mergeLarge(syms)
    }

    /// Quadratic merge loop; fastest for short words.
    private func mergeSmall(_ input: [Int32]) -> [Int32] {
        var syms = input
        while syms.count > 1 {
            var bestRank = UInt64.max, bestNew: Int32 = 0, bi = -1
            for k in 0..<(syms.count - 1) {
                if let m = merges[BPEModel.pairKey(syms[k], syms[k + 1])] {
                    let r = m >> 32
                    if r < bestRank { bestRank = r; bi = k; bestNew = Int32(truncatingIfNeeded: m & 0xFFFF_FFFF) }
                }
            }
            if bi < 0 { break }
            syms[bi] = bestNew
            syms.remove(at: bi + 1)
        }
        return syms
    }

    /// Heap-based merge with a linked list; O(n log n) for long words.
    private func mergeLarge(_ input: [Int32]) -> [Int32] {
        let n = input.count
        var sym = input
        var prev = [Int](0..<n).map { $0 - 1 }
        var next = [Int](0..<n).map { $0 + 1 }
        var alive = [Bool](repeating: true, count: n)
        var heap = BinaryHeap()
        func push(_ i: Int) {
            let j = next[i]
            guard j < n, let m = merges[BPEModel.pairKey(sym[i], sym[j])] else { return }
            heap.push(((m >> 32) << 32) | UInt64(i))
        }
        for i in 0..<(n - 1) { push(i) }
        while let top = heap.pop() {
            let rank = top >> 32
            let i = Int(top & 0xFFFF_FFFF)
            guard alive[i] else { continue }
            let j = next[i]
            guard j < n, let m = merges[BPEModel.pairKey(sym[i], sym[j])], m >> 32 == rank else { continue }
            sym[i] = Int32(truncatingIfNeeded: m & 0xFFFF_FFFF)
            alive[j] = false
            next[i] = next[j]
            if next[j] < n { prev[next[j]] = i }
            if prev[i] >= 0 { push(prev[i]) }
            push(i)
        }
        var out = [Int32]()
        var i = 0
        while i < n { out.append(sym[i]); i = next[i] }
        return out
    }
}

/// A min-heap of UInt64 keys.
struct BinaryHeap {
    private var a: [UInt64] = []
    mutating func push(_ x: UInt64) {
        a.append(x)
        var i = a.count - 1
        while i > 0 {
            let p = (i - 1) / 2
            if a[p] <= a[i] { break }
            a.swapAt(p, i); i = p
        }
    }
    mutating func pop() -> UInt64? {
        guard let first = a.first else { return nil }
        let last = a.removeLast()
        if !a.isEmpty {
            a[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < a.count && a[l] < a[m] { m = l }
                if r < a.count && a[r] < a[m] { m = r }
                if m == i { break }
                a.swapAt(i, m); i = m
            }
        }
        return first
    }
}

/// Token string → id, compared byte-wise (Swift `String` equality is canonical equivalence,
/// which would merge distinct tokens such as U+1F71 and U+03AC).
struct Vocab: Sequence {
    private(set) var map: [[UInt8]: Int32]
    init(minimumCapacity: Int = 0) { map = .init(minimumCapacity: minimumCapacity) }
    subscript(_ s: String) -> Int32? {
        get { map[Array(s.utf8)] }
        set { map[Array(s.utf8)] = newValue }
    }
    subscript(bytes b: [UInt8]) -> Int32? { map[b] }
    var count: Int { map.count }
    func makeIterator() -> AnyIterator<(String, Int32)> {
        var it = map.makeIterator()
        return AnyIterator { it.next().map { (String(decoding: $0.key, as: UTF8.self), $0.value) } }
    }
}
