import Foundation
import SqueezeCore

/// Describes a model file or checkpoint directory: format, metadata, config.json beside it,
/// every tensor and the totals. Reads headers only (no tensor data).
public enum ModelInspector {
    struct TensorRow {
        let name: String
        let type: String
        let shape: [Int]
        let bytes: Int
        let file: String?
        var parameters: Int { shape.reduce(1, *) }
    }

    struct Report {
        var path: String
        var format: String
        var version: Int?
        var files: [String] = []
        var metadata: [(key: String, text: String, json: Any)] = []
        var configPath: String?
        var config: [String: Any]?
        var tensors: [TensorRow] = []
    }

    /// A human-readable description of a safetensors file, checkpoint directory or GGUF file.
    public static func describe(path: String) throws -> String {
        let r = try gather(path: path)
        var out = "path: \(r.path)\n"
        out += "format: \(r.format)" + (r.version.map { " v\($0)" } ?? "") + "\n"
        if r.files.count > 1 {
            out += "files (\(r.files.count)):\n"
            for f in r.files { out += "  \(f)\n" }
        }
        out += "metadata (\(r.metadata.count)):\n"
        for m in r.metadata { out += "  \(m.key) = \(m.text)\n" }
        if let c = r.config, let cp = r.configPath {
            out += "config.json (\(cp)):\n"
            for k in c.keys.sorted() { out += "  \(k) = \(compact(c[k]!, limit: 100))\n" }
        }
        out += "tensors (\(r.tensors.count)):\n"
        let w = min(60, r.tensors.map { $0.name.count }.max() ?? 0)
        let tw = r.tensors.map { $0.type.count }.max() ?? 0
        for t in r.tensors {
            let shape = "[" + t.shape.map(String.init).joined(separator: ", ") + "]"
            out += "  \(t.name.padding(toLength: max(w, t.name.count), withPad: " ", startingAt: 0))  "
            out += "\(t.type.padding(toLength: tw, withPad: " ", startingAt: 0))  \(shape)  \(t.bytes) bytes"
            if r.files.count > 1, let f = t.file { out += "  (\(f))" }
            out += "\n"
        }
        let params = r.tensors.reduce(0) { $0 + $1.parameters }
        let bytes = r.tensors.reduce(0) { $0 + $1.bytes }
        out += "total: \(r.tensors.count) tensors, \(params) parameters, \(bytes) bytes\n"
        return out
    }

    /// The same description as a JSON object (keys sorted): `path`, `format`, `version`, `files`,
    /// `metadata`, `config`, `tensors` (`name`, `type`, `shape`, `bytes`, `parameters`, `file`) and
    /// `totals` (`tensors`, `parameters`, `bytes`). GGUF arrays longer than 16 items are summarized
    /// as `{"count", "first"}` with their first 8 items.
    public static func describeJSON(path: String) throws -> String {
        let r = try gather(path: path)
        var obj: [String: Any] = ["path": r.path, "format": r.format, "files": r.files]
        if let v = r.version { obj["version"] = v }
        var md: [String: Any] = [:]
        for m in r.metadata { md[m.key] = m.json }
        obj["metadata"] = md
        if let c = r.config { obj["config"] = c }
        obj["tensors"] = r.tensors.map { t -> [String: Any] in
            var d: [String: Any] = [
                "name": t.name, "type": t.type, "shape": t.shape, "bytes": t.bytes, "parameters": t.parameters,
            ]
            if let f = t.file { d["file"] = f }
            return d
        }
        obj["totals"] = [
            "tensors": r.tensors.count,
            "parameters": r.tensors.reduce(0) { $0 + $1.parameters },
            "bytes": r.tensors.reduce(0) { $0 + $1.bytes },
        ]
        let data = try JSONSerialization.data(withJSONObject: obj, options: [.prettyPrinted, .sortedKeys])
        return String(decoding: data, as: UTF8.self)
    }

    static func gather(path: String) throws -> Report {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw CoreError.cannotOpen(path: path, reason: "no such file or directory")
        }
        var r: Report
        if !isDir.boolValue, try isGGUF(path) {
            let g = try GGUFFile(path: path)
            r = Report(path: path, format: "GGUF", version: g.version, files: [path])
            for k in g.metadataKeys {
                let v = g.metadata[k]!
                r.metadata.append((k, v.description, jsonValue(v)))
            }
            r.tensors = g.tensors.map {
                TensorRow(name: $0.name, type: $0.type.name, shape: $0.shape, bytes: $0.byteCount, file: nil)
            }
        } else {
            let m = try SafeTensorsModel(path: path)
            r = Report(
                path: path, format: m.indexPath != nil ? "safetensors (sharded)" : "safetensors", version: nil,
                files: m.files.map { ($0.path as NSString).lastPathComponent })
            if let idx = m.indexPath { r.files.insert((idx as NSString).lastPathComponent, at: 0) }
            for k in m.metadata.keys.sorted() { r.metadata.append((k, m.metadata[k]!, m.metadata[k]!)) }
            for n in m.tensorNames {
                let f = m.file(for: n)!
                let i = f.info(n)!
                r.tensors.append(
                    TensorRow(
                        name: n, type: i.dtype.safetensorsName, shape: i.shape, bytes: i.byteCount,
                        file: (f.path as NSString).lastPathComponent))
            }
        }
        let dir = isDir.boolValue ? path : (path as NSString).deletingLastPathComponent
        let cp = ((dir.isEmpty ? "." : dir) as NSString).appendingPathComponent("config.json")
        if let data = FileManager.default.contents(atPath: cp) {
            guard let c = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
                throw FormatError.corrupt(file: cp, detail: "not a JSON object")
            }
            r.configPath = cp
            r.config = c
        }
        return r
    }

    static func isGGUF(_ path: String) throws -> Bool {
        guard let h = FileHandle(forReadingAtPath: path) else {
            throw CoreError.cannotOpen(path: path, reason: "cannot read")
        }
        defer { try? h.close() }
        let magic = h.readData(ofLength: 4)
        return magic == Data("GGUF".utf8)
    }

    static func jsonValue(_ v: GGUFValue) -> Any {
        switch v {
        case let .string(s): return s
        case let .bool(b): return b
        case let .float32(f): return Double(f)
        case let .float64(d): return d
        case let .uint64(u): return u <= UInt64(Int.max) ? Int(u) : Double(u)
        case let .array(a):
            if a.count <= 16 { return a.map(jsonValue) }
            return ["count": a.count, "first": a.prefix(8).map(jsonValue)] as [String: Any]
        default: return v.int!
        }
    }

    static func compact(_ v: Any, limit: Int) -> String {
        let s: String
        if v is [Any] || v is [String: Any],
            let d = try? JSONSerialization.data(withJSONObject: v, options: [.sortedKeys])
        {
            s = String(decoding: d, as: UTF8.self)
        } else if let str = v as? String {
            s = str
        } else if isJSONBool(v) {
            s = (v as! NSNumber).boolValue ? "true" : "false"
        } else if v is NSNull {
            s = "null"
        } else {
            s = "\(v)"
        }
        return s.count > limit ? String(s.prefix(limit - 3)) + "..." : s
    }
}
