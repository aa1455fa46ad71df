import Foundation

extension QuantizeReport {
    /// A plain-text table of the per-tensor figures and the totals.
    public func textSummary(perTensor: Bool = true) -> String {
        var s = ""
        if perTensor {
            s += "tensor                                   rows x cols      rel.err   weighted err   sparse   time\n"
            for t in tensors {
                s += String(
                    format: "%-40@ %5d x %-6d %9.5f %14.6g %8d %6.2fs\n", t.name as NSString, t.rows, t.columns,
                    t.relativeError, t.weightedError, t.sparseCount, t.seconds)
            }
        }
        s += String(
            format:
                "%d tensors, %d weights: %.3f bits per weight (tables and sparse part included), %d sparse (%.3f%%)\n",
            tensors.count, quantizedWeights, bitsPerWeight, totalSparse,
            100 * Double(totalSparse) / Double(max(quantizedWeights, 1)))
        s += String(
            format: "weighted error %.6g, squared error %.6g; output %.1f MiB in %.1f s\n",
            totalWeightedError, totalSquaredError, Double(outputBytes) / 1048576, wallSeconds)
        return s
    }

    /// A self-contained HTML report with inline SVG charts (no scripts) of relative error and sparse
    /// counts per layer and matrix type.
    public func html() -> String {
        let types = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"]
        let colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
        func layerOf(_ n: String) -> Int? {
            let p = n.split(separator: ".")
            guard let i = p.firstIndex(where: { $0 == "layers" || $0 == "h" }), i + 1 < p.count else { return nil }
            return Int(p[i + 1])
        }
        // OPT's and GPT-2's names, charted as the Llama matrix of the same role (GPT-2's fused c_attn as q_proj).
        let aliases = [
            "out_proj": "o_proj", "fc1": "up_proj", "fc2": "down_proj", "attn.c_attn": "q_proj",
            "attn.c_proj": "o_proj", "mlp.c_fc": "up_proj", "mlp.c_proj": "down_proj",
        ]
        func typeOf(_ n: String) -> Int {
            if let i = types.firstIndex(where: { n.hasSuffix($0) }) { return i }
            if let a = aliases.first(where: { n.hasSuffix($0.key) }), let i = types.firstIndex(of: a.value) { return i }
            return 7
        }
        let layers = (tensors.compactMap { layerOf($0.name) }.max() ?? 0) + 1
        func chart(title: String, value: (TensorReport) -> Double) -> String {
            let w = 900.0, h = 260.0, left = 60.0, bottom = 30.0
            let maxV = max(tensors.map(value).max() ?? 1, 1e-12)
            let bw = (w - left - 10) / Double(layers) / Double(types.count - 1)
            var svg =
                "<h2>\(title)</h2><svg width=\"\(Int(w))\" height=\"\(Int(h))\" xmlns=\"http://www.w3.org/2000/svg\" font-size=\"10\">"
            svg += "<line x1=\"\(left)\" y1=\"\(h - bottom)\" x2=\"\(w - 10)\" y2=\"\(h - bottom)\" stroke=\"black\"/>"
            svg += "<line x1=\"\(left)\" y1=\"10\" x2=\"\(left)\" y2=\"\(h - bottom)\" stroke=\"black\"/>"
            svg += String(
                format: "<text x=\"2\" y=\"14\">%.3g</text><text x=\"2\" y=\"%.0f\">0</text>", maxV, h - bottom)
            for t in tensors {
                guard let l = layerOf(t.name) else { continue }
                let ti = typeOf(t.name)
                let x = left + (Double(l) * Double(types.count - 1) + Double(ti)) * bw
                let bh = (h - bottom - 10) * value(t) / maxV
                svg += String(
                    format:
                        "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%@\"><title>%@: %.4g</title></rect>",
                    x, h - bottom - bh, max(bw - 0.5, 0.5), bh, colors[ti], t.name, value(t))
            }
            for l in stride(from: 0, to: layers, by: max(1, layers / 10)) {
                svg += String(
                    format: "<text x=\"%.1f\" y=\"%.0f\">%d</text>", left + Double(l * (types.count - 1)) * bw, h - 12,
                    l)
            }
            svg += "<text x=\"\(w / 2)\" y=\"\(h - 1)\">layer</text></svg>"
            return svg
        }
        var legend = "<p>"
        for (i, t) in types.prefix(7).enumerated() {
            legend += "<span style=\"color:\(colors[i])\">&#9632; \(t)</span> "
        }
        legend += "</p>"
        var rows = ""
        for t in tensors {
            rows += String(
                format: "<tr><td>%@</td><td>%d x %d</td><td>%.5f</td><td>%.6g</td><td>%d</td><td>%.2f</td></tr>",
                t.name, t.rows, t.columns, t.relativeError, t.weightedError, t.sparseCount, t.seconds)
        }
        let esc = { (s: String) in
            s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
        }
        return """
            <!doctype html><html><head><meta charset="utf-8"><title>squeeze quantize report</title>
            <style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;font-size:12px}</style></head><body>
            <h1>Quantization report</h1>
            <p>model: \(esc(model))<br>output: \(esc(output))<br>\(bits)-bit \(method), k-means \(kmeans), sensitivity \(esc(sensitivity)), \(esc(sparsity))</p>
            <pre>\(esc(textSummary(perTensor: false)))</pre>
            \(legend)
            \(chart(title: "Relative error per layer and matrix", value: { $0.relativeError }))
            \(chart(title: "Sparse (kept) weights per layer and matrix", value: { Double($0.sparseCount) }))
            <h2>Tensors</h2><table><tr><th>tensor</th><th>shape</th><th>relative error</th><th>weighted error</th><th>sparse</th><th>seconds</th></tr>\(rows)</table>
            </body></html>
            """
    }
}
