import CSqueezeKernels
import Foundation
import SqueezeCore
import SqueezeKernels

extension DecoderModel {
    /// The scale of the attention scores: 1/sqrt(headDim), or the family's (Gemma's
    /// `query_pre_attn_scalar`^-1/2).
    var attentionScale: Float {
        config.attentionMultiplier.map(Float.init) ?? 1 / Float(config.headDim).squareRoot()
    }

    /// The RoPE tables of block `li` in `ws`: the local ones on sliding-window layers of a model with
    /// a local RoPE base (Gemma 3), the global ones otherwise.
    func ropeTables(_ ws: Workspace, layer li: Int) -> (UnsafePointer<Float>, UnsafePointer<Float>) {
        if !invFreqLocal.isEmpty && layers[li].attention.window != nil {
            return (UnsafePointer(ws.cosL.pointer), UnsafePointer(ws.sinL.pointer))
        }
        return (UnsafePointer(ws.cosT.pointer), UnsafePointer(ws.sinT.pointer))
    }

    /// x = cap * tanh(x / cap) over n values (Gemma 2's soft-capping of scores and logits).
    static func softcap(_ x: UnsafeMutablePointer<Float>, _ n: Int, _ cap: Float) {
        for i in 0..<n { x[i] = cap * tanhf(x[i] / cap) }
    }

    /// out = act(g) * u over n values for the gated MLP of the config (SiLU or tanh GELU).
    func gatedActivation(
        _ g: UnsafeMutablePointer<Float>, _ u: UnsafeMutablePointer<Float>, _ out: UnsafeMutablePointer<Float>,
        _ n: Int
    ) {
        guard config.activation == .gegluTanh else {
            siluMul(g, u, out, n)
            return
        }
        pool.parallelFor(n, minBlock: 8192) { r, _ in
            let c = Activation.geluC
            for i in r {
                let x = g[i]
                out[i] = 0.5 * x * (1 + tanhf(c * (x + 0.044715 * x * x * x))) * u[i]
            }
        }
    }

    /// Gemma's norm of a block's attention or MLP output `y` (T rows) in place; the training forward
    /// keeps its input and statistics.
    func postNorm(
        _ norm: Norm, _ y: UnsafeMutablePointer<Float>, _ T: Int, _ li: Int, attention: Bool,
        record: ForwardRecorder?
    ) {
        let h = config.hiddenSize
        let fr = record?.ws.family, s = record?.ws.slot(li) ?? 0
        if let fr {
            (attention ? fr.attnOut : fr.mlpOut)[s].pointer.update(from: y, count: T * h)
        }
        norm.apply(y, y, rows: T, width: h, stats: fr.map { attention ? $0.postAttnStats(s) : $0.postMLPStats(s) })
    }
}
