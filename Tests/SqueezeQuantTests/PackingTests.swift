import SqueezeQuant
import Testing

@Suite struct PackingTests {
    /// Packing matches the numpy fixtures bit for bit, and unpacking inverts it.
    @Test func fixtures() throws {
        let root = try #require(try loadFixture("packing_fixtures.json") as? [String: Any])
        let cases = try #require(root["cases"] as? [[String: Any]])
        #expect(cases.count == 6)
        for c in cases {
            let bits = c["bits"] as! Int, rows = c["rows"] as! Int, cols = c["cols"] as! Int
            let idx = (c["indices"] as! [Int]).map { UInt8($0) }
            let expected = (c["qweight"] as! [Int]).map { Int32($0) }
            let packed = try SqueezePacking.pack(indices: idx, rows: rows, cols: cols, bits: bits)
            #expect(packed == expected, "\(bits)-bit \(rows)x\(cols)")
            let back = try SqueezePacking.unpack(qweight: expected, rows: rows, cols: cols, bits: bits)
            #expect(back == idx)
            if bits == 3 {
                #expect(try SqueezePacking.pack3(indices: idx, rows: rows, cols: cols) == expected)
                #expect(try SqueezePacking.unpack3(qweight: expected, rows: rows, cols: cols) == idx)
            } else {
                #expect(try SqueezePacking.pack4(indices: idx, rows: rows, cols: cols) == expected)
                #expect(try SqueezePacking.unpack4(qweight: expected, rows: rows, cols: cols) == idx)
            }
        }
    }

    /// 2- and 8-bit round trips, and the shape of qweight.
    @Test(arguments: [2, 3, 4, 8])
    func roundTrip(bits: Int) throws {
        var rng = SplitMix64(seed: UInt64(bits))
        let rows = 9, cols = 64
        let idx = (0..<(rows * cols)).map { _ in UInt8(rng.next() % UInt64(1 << bits)) }
        let p = try SqueezePacking.pack(indices: idx, rows: rows, cols: cols, bits: bits)
        #expect(p.count == cols * bits / 32 * rows)
        #expect(try SqueezePacking.unpack(qweight: p, rows: rows, cols: cols, bits: bits) == idx)
    }

    /// Input dimensions that do not fill whole words are refused.
    @Test func badDimensions() {
        #expect(throws: QuantError.badInputDimension(tensor: "t", columns: 48, bits: 3, multiple: 32)) {
            try SqueezePacking.pack(
                indices: [UInt8](repeating: 0, count: 48), rows: 1, cols: 48, bits: 3, tensorName: "t")
        }
        #expect(throws: QuantError.self) {
            try SqueezePacking.pack4(indices: [UInt8](repeating: 0, count: 12), rows: 1, cols: 12)
        }
        #expect(throws: QuantError.self) {
            try SqueezePacking.pack(indices: [UInt8](repeating: 0, count: 32), rows: 1, cols: 32, bits: 5)
        }
    }
}
