import CSqueezeKernels
import Foundation
import SqueezeCore
import SqueezeKernels

/// A linear layer: its operator and an optional bias added to every output row.
public struct Linear {
    public let op: LinearOperator
    public let bias: AlignedBuffer<Float>?

    public init(_ op: LinearOperator, bias: AlignedBuffer<Float>? = nil) {
        self.op = op
        self.bias = bias
    }

    /// Y[t] = W X[t] + b for the m rows of X (row strides `ldx`, `ldy`).
    @inline(__always)
    func callAsFunction(
        _ x: UnsafePointer<Float>, ldx: Int, m: Int, _ y: UnsafeMutablePointer<Float>, ldy: Int,
        pool: WorkerPool
    ) {
        op.gemm(x, ldx: ldx, m: m, y, ldy: ldy, pool: pool)
        if let b = bias { addRowVector(y, ldy: ldy, b.pointer, rows: m, count: op.rows) }
    }
}

/// y[t, 0..<count] += b for each of `rows` rows.
@inline(__always)
func addRowVector(_ y: UnsafeMutablePointer<Float>, ldy: Int, _ b: UnsafePointer<Float>, rows: Int, count: Int) {
    for t in 0..<rows {
        let r = y + t * ldy
        for i in 0..<count { r[i] += b[i] }
    }
}

/// Per-row statistics a training forward keeps for a norm's backward: 1/rms (RMSNorm) or 1/std
/// (LayerNorm) in `scale`, the mean (LayerNorm only) in `mean`.
struct NormStats {
    let scale: UnsafeMutablePointer<Float>
    let mean: UnsafeMutablePointer<Float>
}

/// A block's normalisation with its weights.
public enum Norm {
    /// x / rms(x) * w (Llama).
    case rms(weight: AlignedBuffer<Float>, eps: Float)
    /// (x - mean) / std * w + b (OPT, GPT-2).
    case layerNorm(weight: AlignedBuffer<Float>, bias: AlignedBuffer<Float>, eps: Float)

    public var weight: AlignedBuffer<Float> {
        switch self {
        case let .rms(w, _): return w
        case let .layerNorm(w, _, _): return w
        }
    }

    /// Normalises T rows of width n from `x` into `out` (which may be `x`); records each row's
    /// statistics into `stats` when given.
    func apply(
        _ x: UnsafeMutablePointer<Float>, _ out: UnsafeMutablePointer<Float>, rows T: Int, width n: Int,
        stats: NormStats? = nil
    ) {
        switch self {
        case let .rms(weight, eps):
            let w = weight.pointer
            for t in 0..<T {
                let row = x + t * n, o = out + t * n
                let ss = sq_dot_f32(row, row, Int64(n))
                let scale = 1 / (ss / Float(n) + eps).squareRoot()
                stats?.scale[t] = scale
                for i in 0..<n { o[i] = row[i] * scale * w[i] }
            }
        case let .layerNorm(weight, bias, eps):
            let w = weight.pointer, b = bias.pointer
            for t in 0..<T {
                let row = x + t * n, o = out + t * n
                var mean: Float = 0
                for i in 0..<n { mean += row[i] }
                mean /= Float(n)
                var v: Float = 0
                for i in 0..<n { let d = row[i] - mean; v += d * d }
                let r = 1 / (v / Float(n) + eps).squareRoot()
                if let stats { stats.scale[t] = r; stats.mean[t] = mean }
                for i in 0..<n { o[i] = (row[i] - mean) * r * w[i] + b[i] }
            }
        }
    }

    /// dx += (d norm(x) / dx)^T dy for T rows of width n, with the statistics `apply` recorded.
    /// RMSNorm: dx_i += r w_i dy_i - x_i r^3 / n * sum_j dy_j w_j x_j. LayerNorm (xh = (x - mu) r,
    /// g = dy w): dx_i += r (g_i - mean(g) - xh_i mean(g xh)).
    func backward(
        _ x: UnsafeMutablePointer<Float>, stats: NormStats, _ dy: UnsafeMutablePointer<Float>,
        _ dx: UnsafeMutablePointer<Float>, rows T: Int, width n: Int, pool: WorkerPool
    ) {
        let w = weight.pointer
        let layerNorm: Bool
        if case .layerNorm = self { layerNorm = true } else { layerNorm = false }
        pool.parallelFor(T, minBlock: 16) { r, _ in
            for t in r {
                let xr = x + t * n, dyr = dy + t * n, dxr = dx + t * n
                let s = stats.scale[t]
                if layerNorm {
                    let mu = stats.mean[t]
                    var sg: Float = 0, sgx: Float = 0
                    for i in 0..<n { let g = dyr[i] * w[i]; sg += g; sgx += g * (xr[i] - mu) * s }
                    let mg = sg / Float(n), mgx = sgx / Float(n)
                    for i in 0..<n { dxr[i] += s * (dyr[i] * w[i] - mg - (xr[i] - mu) * s * mgx) }
                } else {
                    var dot: Float = 0
                    for i in 0..<n { dot += dyr[i] * w[i] * xr[i] }
                    let c = dot * s * s * s / Float(n)
                    for i in 0..<n { dxr[i] += s * w[i] * dyr[i] - xr[i] * c }
                }
            }
        }
    }
}

/// The elementwise activation of a non-gated MLP.
public enum Activation: Sendable, Equatable {
    /// max(x, 0) (OPT).
    case relu
    /// GELU with the tanh approximation (GPT-2's `gelu_new`).
    case geluTanh

    /// sqrt(2 / pi).
    static let geluC: Float = 0.7978845608028654

    /// out = act(u) over n values.
    func apply(_ u: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ n: Int) {
        switch self {
        case .relu: for i in 0..<n { out[i] = max(u[i], 0) }
        case .geluTanh:
            let c = Activation.geluC
            for i in 0..<n {
                let x = u[i]
                out[i] = 0.5 * x * (1 + tanhf(c * (x + 0.044715 * x * x * x)))
            }
        }
    }

    /// du = dact * act'(u) over n values.
    func backward(_ u: UnsafePointer<Float>, _ dact: UnsafePointer<Float>, _ du: UnsafeMutablePointer<Float>, _ n: Int)
    {
        switch self {
        case .relu: for i in 0..<n { du[i] = u[i] > 0 ? dact[i] : 0 }
        case .geluTanh:
            let c = Activation.geluC
            for i in 0..<n {
                let x = u[i]
                let th = tanhf(c * (x + 0.044715 * x * x * x))
                let d = 0.5 * (1 + th) + 0.5 * x * (1 - th * th) * c * (1 + 3 * 0.044715 * x * x)
                du[i] = dact[i] * d
            }
        }
    }
}

/// A block's MLP.
public enum MLP {
    /// down(silu(gate(x)) * up(x)) (SwiGLU: Llama, Mistral, Qwen2).
    case gated(gate: Linear, up: Linear, down: Linear)
    /// down(act(up(x))) (OPT's fc1/fc2, GPT-2's c_fc/c_proj).
    case plain(up: Linear, down: Linear, activation: Activation)

    public var gate: Linear? {
        if case let .gated(g, _, _) = self { return g }
        return nil
    }
    public var up: Linear {
        switch self {
        case let .gated(_, u, _): return u
        case let .plain(u, _, _): return u
        }
    }
    public var down: Linear {
        switch self {
        case let .gated(_, _, d): return d
        case let .plain(_, d, _): return d
        }
    }
}

/// A block's attention projections and options.
public struct Attention {
    public let q: Linear, k: Linear, v: Linear, o: Linear
    /// Keys visible to each query: the last `window` positions (nil: all, causal).
    public let window: Int?
    /// Per-head norms of the queries and keys before RoPE (Qwen3, Gemma 3), over `headDim` values.
    public let qNorm: Norm?, kNorm: Norm?

    public init(q: Linear, k: Linear, v: Linear, o: Linear, window: Int?, qNorm: Norm? = nil, kNorm: Norm? = nil) {
        self.q = q; self.k = k; self.v = v; self.o = o
        self.window = window
        self.qNorm = qNorm; self.kNorm = kNorm
    }
}

/// One transformer block: pre-LN x + attn(norm1(x)), then + mlp(norm2(.)); post-LN (OPT-350m)
/// norm1(x + attn(x)), then norm2(. + mlp(.)).
public struct DecoderLayer {
    /// The norm before attention (post-LN: after the attention residual).
    public let attentionNorm: Norm
    public let attention: Attention
    /// The norm before the MLP (post-LN: after the MLP residual).
    public let mlpNorm: Norm
    public let mlp: MLP
    /// Norms of the attention output and of the MLP output before their residual adds (Gemma).
    public var postAttentionNorm: Norm? = nil
    public var postMLPNorm: Norm? = nil

    /// The linear layer of `kind`; nil when the block has none (the gate of a non-gated MLP).
    public func linear(_ kind: LinearKind) -> Linear? {
        switch kind {
        case .q: return attention.q
        case .k: return attention.k
        case .v: return attention.v
        case .o: return attention.o
        case .gate: return mlp.gate
        case .up: return mlp.up
        case .down: return mlp.down
        }
    }

    /// The operator of `kind`; nil when the block has none.
    public func op(_ kind: LinearKind) -> LinearOperator? { linear(kind)?.op }

    /// The block's linear operators with their kinds, in `LinearKind` order.
    public var linears: [(LinearKind, LinearOperator)] {
        LinearKind.allCases.compactMap { k in op(k).map { (k, $0) } }
    }
}

extension DecoderModel {
    /// out = silu(g) * u over n values, spread over the pool through a job on the stack (no allocation).
    func siluMul(
        _ g: UnsafeMutablePointer<Float>, _ u: UnsafeMutablePointer<Float>, _ out: UnsafeMutablePointer<Float>,
        _ n: Int
    ) {
        VectorOps.siluMul(g, u, out, n, pool: pool)
    }

    /// Rotates each head's pairs of `v` (T rows of `heads` heads) by the angles of `cosT`/`sinT`
    /// ([T, headDim / 2]): by +angle, or by -angle for `inverse` (the backward of the rotation).
    func rope(
        _ v: UnsafeMutablePointer<Float>, rows T: Int, heads: Int, cos cosT: UnsafePointer<Float>,
        sin sinT: UnsafePointer<Float>, inverse: Bool = false
    ) {
        let hd = config.headDim, half = hd / 2
        let interleaved = ropeLayout == .interleaved
        let sign: Float = inverse ? -1 : 1
        let ia = interleaved ? 2 : 1, ib0 = interleaved ? 1 : half
        for t in 0..<T {
            let cs = cosT + t * half, sn = sinT + t * half
            for hh in 0..<heads {
                let p = v + (t * heads + hh) * hd
                for i in 0..<half {
                    let ja = ia * i, jb = ia * i + ib0
                    let a = p[ja], b = p[jb], c = cs[i], s = sign * sn[i]
                    p[ja] = a * c - b * s
                    p[jb] = a * s + b * c
                }
            }
        }
    }
}
