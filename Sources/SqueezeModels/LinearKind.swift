/// The seven linear roles of a decoder block, in backward order (`DecoderLayer.linear(_:)`).
///
/// A family stores each role under its own tensor name (`ModelFamily.linearSuffix(_:)`, the one table
/// of names); families without a gated MLP have no `.gate`.
public enum LinearKind: Int, CaseIterable, Sendable, CustomStringConvertible {
    case q, k, v, o, gate, up, down

    public var description: String {
        switch self {
        case .q: return "q"
        case .k: return "k"
        case .v: return "v"
        case .o: return "o"
        case .gate: return "gate"
        case .up: return "up"
        case .down: return "down"
        }
    }
}

extension ModelFamily {
    /// The name (without `.weight`) of the tensor holding `kind` after the block prefix; nil when the
    /// family has no such layer. GPT-2's q, k and v share the fused `attn.c_attn`; Phi-3 fuses
    /// `qkv_proj` and `gate_up_proj`.
    public func linearSuffix(_ kind: LinearKind) -> String? {
        switch self {
        case .llama, .mistral, .qwen2, .qwen3, .gemma2, .gemma3:
            switch kind {
            case .q: return "self_attn.q_proj"
            case .k: return "self_attn.k_proj"
            case .v: return "self_attn.v_proj"
            case .o: return "self_attn.o_proj"
            case .gate: return "mlp.gate_proj"
            case .up: return "mlp.up_proj"
            case .down: return "mlp.down_proj"
            }
        case .phi3:
            switch kind {
            case .q, .k, .v: return "self_attn.qkv_proj"
            case .o: return "self_attn.o_proj"
            case .gate, .up: return "mlp.gate_up_proj"
            case .down: return "mlp.down_proj"
            }
        case .opt:
            switch kind {
            case .q: return "self_attn.q_proj"
            case .k: return "self_attn.k_proj"
            case .v: return "self_attn.v_proj"
            case .o: return "self_attn.out_proj"
            case .gate: return nil
            case .up: return "fc1"
            case .down: return "fc2"
            }
        case .gpt2:
            switch kind {
            case .q, .k, .v: return "attn.c_attn"
            case .o: return "attn.c_proj"
            case .gate: return nil
            case .up: return "mlp.c_fc"
            case .down: return "mlp.c_proj"
            }
        }
    }

    /// Prefix of block `layer`'s tensor names under `tensorPrefix` (the family's default when nil).
    public func layerPrefix(_ layer: Int, tensorPrefix: String? = nil) -> String {
        let p = tensorPrefix ?? defaultTensorPrefix
        switch self {
        case .llama, .mistral, .qwen2, .qwen3, .gemma2, .gemma3, .phi3, .opt: return "\(p)layers.\(layer)."
        case .gpt2: return "\(p)h.\(layer)."
        }
    }

    /// The full weight name of `kind` in block `layer` under `tensorPrefix` (the family's default when
    /// nil); nil when the family has no such layer.
    public func weightName(layer: Int, kind: LinearKind, tensorPrefix: String? = nil) -> String? {
        linearSuffix(kind).map { layerPrefix(layer, tensorPrefix: tensorPrefix) + $0 + ".weight" }
    }
}
