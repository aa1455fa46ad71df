/// Finds stop strings in streamed text. Text that could be the beginning of a stop string is
/// held back until it is known not to be one, so no part of a stop string is ever emitted.
/// Matching is on Unicode scalars.
public struct StopMatcher: Sendable {
    let stops: [[Unicode.Scalar]]
    var held: [Unicode.Scalar] = []

    /// A matcher for `stops` (empty strings are ignored).
    public init(_ stops: [String]) {
        self.stops = stops.filter { !$0.isEmpty }.map { Array($0.unicodeScalars) }
    }

    /// Adds text; returns the text that is safe to emit and whether a stop string was found
    /// (then the text is everything before the earliest stop string, and the rest is dropped).
    public mutating func push(_ text: String) -> (text: String, stopped: Bool) {
        if stops.isEmpty { return (text, false) }
        held.append(contentsOf: text.unicodeScalars)
        // Earliest complete match.
        var best: Int?
        for s in stops where s.count <= held.count {
            var i = 0
            while i + s.count <= held.count {
                if held[i] == s[0] && held[i..<(i + s.count)].elementsEqual(s) { break }
                i += 1
            }
            if i + s.count <= held.count { best = min(best ?? i, i) }
        }
        if let b = best {
            let out = String(String.UnicodeScalarView(held[..<b]))
            held.removeAll()
            return (out, true)
        }
        // Longest suffix of `held` that is a proper prefix of a stop string.
        var keep = 0
        for s in stops {
            var k = min(s.count - 1, held.count)
            while k > keep {
                if held[(held.count - k)...].elementsEqual(s[..<k]) { keep = k; break }
                k -= 1
            }
        }
        let out = String(String.UnicodeScalarView(held[..<(held.count - keep)]))
        held.removeFirst(held.count - keep)
        return (out, false)
    }

    /// Returns the held-back text (generation ended without completing a stop string).
    public mutating func flush() -> String {
        defer { held.removeAll() }
        return String(String.UnicodeScalarView(held))
    }
}
