import ArgumentParser
import Foundation
import SqueezeCore
import SqueezeEval
import SqueezeKernels
import SqueezeModels
import SqueezeQuant

// The library's option enums, parsed from their raw values; a bad value lists the valid ones.
extension KVCachePrecision: ExpressibleByArgument {}
extension HeadFormat: ExpressibleByArgument {}
extension KMeansEngine: ExpressibleByArgument {}
extension QuantMethod: ExpressibleByArgument {}
extension PerplexityProtocol: ExpressibleByArgument {}
extension SensitivityMode: ExpressibleByArgument {}
extension SensitivityPass: ExpressibleByArgument {}

/// `--kernels`: how quantized layers compute their products.
public enum KernelsMode: String, CaseIterable, Sendable, ExpressibleByArgument {
    /// 7-bit table codes and int8 activations (decoding's kernels).
    case fast
    /// Float tables.
    case exact

    public var lutMode: LUTMode { self == .fast ? .int8 : .float }
}

/// `--dtype` of a full-precision model at load: as stored, or converted to one float type.
public enum WeightType: String, CaseIterable, Sendable, ExpressibleByArgument {
    case native, f32, f16, bf16

    /// The type to convert to; nil keeps the file's.
    public var dtype: DType? {
        switch self {
        case .native: return nil
        case .f32: return .f32
        case .f16: return .f16
        case .bf16: return .bf16
        }
    }
}

/// A float type written to a checkpoint (`convert --dtype`, `dequantize --dtype`).
public enum FloatType: String, CaseIterable, Sendable, ExpressibleByArgument {
    case f32, f16, bf16

    public var dtype: DType {
        switch self {
        case .f32: return .f32
        case .f16: return .f16
        case .bf16: return .bf16
        }
    }
}

/// `quantize --sparse-dtype`: storage of the sparse part's values.
public enum SparseValueType: String, CaseIterable, Sendable, ExpressibleByArgument {
    case f16, f32

    public var dtype: DType { self == .f16 ? .f16 : .f32 }
}

/// `sensitivity --dtype`: storage of the sensitivity file.
public enum SensitivityValueType: String, CaseIterable, Sendable, ExpressibleByArgument {
    case f32, bf16

    public var dtype: DType { self == .f32 ? .f32 : .bf16 }
}

/// `convert --to`: the output format.
public enum ConvertFormat: String, CaseIterable, Sendable, ExpressibleByArgument {
    case safetensors
}

/// `export --format`: the target engine's layout.
public enum ExportFormat: String, CaseIterable, Sendable, ExpressibleByArgument {
    case vllm
}

/// An integer greater than zero (a count of threads, rounds, sequences).
public struct PositiveInt: ExpressibleByArgument, Equatable, Sendable, CustomStringConvertible {
    public var value: Int

    public init(_ value: Int) {
        precondition(value > 0, "PositiveInt(\(value))")
        self.value = value
    }

    public init?(argument: String) {
        guard let v = Int(argument.trimmingCharacters(in: .whitespaces)), v > 0 else { return nil }
        value = v
    }

    public var description: String { String(value) }
    public var defaultValueDescription: String { description }
}

/// An integer that is zero or more (a queue length, a cache offset).
public struct NonNegativeInt: ExpressibleByArgument, Equatable, Sendable, CustomStringConvertible {
    public var value: Int

    public init(_ value: Int) {
        precondition(value >= 0, "NonNegativeInt(\(value))")
        self.value = value
    }

    public init?(argument: String) {
        guard let v = Int(argument.trimmingCharacters(in: .whitespaces)), v >= 0 else { return nil }
        value = v
    }

    public var description: String { String(value) }
    public var defaultValueDescription: String { description }
}

/// A percentage in [0, 100].
public struct Percentage: ExpressibleByArgument, Equatable, Sendable {
    public var value: Double

    public init?(argument: String) {
        guard let v = Double(argument), v >= 0, v <= 100 else { return nil }
        value = v
    }
}

/// A finite number greater than zero.
public struct PositiveDouble: ExpressibleByArgument, Equatable, Sendable {
    public var value: Double

    public init?(argument: String) {
        guard let v = Double(argument), v > 0, v.isFinite else { return nil }
        value = v
    }
}

/// A matrix shape written ROWSxCOLS, e.g. 4096x11008.
public struct MatrixShape: ExpressibleByArgument, Equatable, Sendable, CustomStringConvertible {
    public var rows: Int
    public var columns: Int

    public init(rows: Int, columns: Int) {
        self.rows = rows
        self.columns = columns
    }

    public init?(argument: String) {
        let parts = argument.trimmingCharacters(in: .whitespaces).split(
            separator: "x", omittingEmptySubsequences: false)
        guard parts.count == 2, let r = Int(parts[0]), let c = Int(parts[1]), r > 0, c > 0 else { return nil }
        rows = r
        columns = c
    }

    public var description: String { "\(rows)x\(columns)" }
    public var defaultValueDescription: String { description }
}

/// A path with a label for tables, written LABEL=PATH or PATH (the label is then the last path component).
public struct LabeledPath: ExpressibleByArgument, Equatable, Sendable {
    public var label: String
    public var path: String

    public init?(argument: String) {
        let parts = argument.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        if parts.count == 2 {
            guard !parts[0].isEmpty, !parts[1].isEmpty else { return nil }
            (label, path) = (parts[0], parts[1])
        } else {
            guard !argument.isEmpty else { return nil }
            (label, path) = (URL(fileURLWithPath: argument).lastPathComponent, argument)
        }
    }
}

/// A comma-separated list of values, e.g. `--threads 1,2,4`; an empty string is the empty list.
public struct CommaSeparated<Element: ExpressibleByArgument>: ExpressibleByArgument {
    public var values: [Element]

    public init(_ values: [Element]) { self.values = values }

    public init?(argument: String) {
        var list: [Element] = []
        for item in argument.split(separator: ",") {
            let s = item.trimmingCharacters(in: .whitespaces)
            if s.isEmpty { continue }
            guard let v = Element(argument: s) else { return nil }
            list.append(v)
        }
        values = list
    }

    public var defaultValueDescription: String { values.map(\.defaultValueDescription).joined(separator: ",") }

    /// Each element's valid values, when the element type lists them.
    public static var allValueStrings: [String] { Element.allValueStrings }
}

extension CommaSeparated: Equatable where Element: Equatable {}
extension CommaSeparated: Sendable where Element: Sendable {}

/// `sensitivity --shard I/N`: shard I (0-based) of N.
public struct ShardSpec: ExpressibleByArgument, Equatable, Sendable, CustomStringConvertible {
    public let index: Int
    public let count: Int

    public init?(argument: String) {
        let p = argument.split(separator: "/")
        guard p.count == 2, let i = Int(p[0]), let n = Int(p[1]), n >= 1, i >= 0, i < n else { return nil }
        index = i
        count = n
    }

    public var description: String { "\(index)/\(count)" }
    public static var defaultCompletionKind: CompletionKind { .default }
}

/// `quantize --layers A-B`: blocks A to B, 0-based and inclusive (a single block: `A`).
public struct LayerRange: ExpressibleByArgument, Equatable, Sendable, CustomStringConvertible {
    public let range: ClosedRange<Int>

    public init?(argument: String) {
        let p = argument.split(separator: "-", omittingEmptySubsequences: false)
        guard p.count == 1 || p.count == 2, let a = Int(p[0]), let b = Int(p[p.count - 1]), a >= 0, b >= a else {
            return nil
        }
        range = a...b
    }

    public var description: String { "\(range.lowerBound)-\(range.upperBound)" }
    public static var defaultCompletionKind: CompletionKind { .default }
}
