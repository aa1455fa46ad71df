import Foundation
import SqueezeCore
import SqueezeModels

/// One run of `Sensitivity.compute` (see there): the windows' block inputs, a workspace and model
/// view per lane, and the loop over blocks.
final class BlockStreamedRun {
    let model: DecoderModel
    let windows: [[Int]]
    let mode: SensitivityMode
    let lanes: Int
    let progress: ((SensitivityProgress) -> Void)?
    /// Per lane: the model on the lane's pool (the model itself for one lane) and its workspace.
    let laneModels: [DecoderModel]
    let workspaces: [TrainingWorkspace]
    /// Per window: its tokens, saved block inputs and gradient.
    let states: [WindowActivations]
    let lock = NSLock()
    let start = Date()
    var done = 0
    let total: Int
    let totalTokens: Int
    /// Seconds each lane spent in forward steps and in backward steps.
    var forwardBusy: [Double]
    var backwardBusy: [Double]

    init(
        model: DecoderModel, windows: [[Int]], mode: SensitivityMode, lanes: Int,
        progress: ((SensitivityProgress) -> Void)?
    ) {
        self.model = model
        self.windows = windows
        self.mode = mode
        self.lanes = max(1, lanes)
        self.progress = progress
        laneModels =
            self.lanes == 1 ? [model] : (0..<self.lanes).map { _ in model.sharingWeights(pool: WorkerPool(threads: 1)) }
        let maxTokens = max(2, windows.map(\.count).max() ?? 2)
        workspaces = laneModels.map { TrainingWorkspace(model: $0, maxTokens: maxTokens) }
        states = windows.map { WindowActivations(model: model, tokens: $0, backward: mode == .fisher) }
        let L = model.layers.count
        total = windows.count * (mode == .fisher ? 2 * L + 1 : L)
        totalTokens = windows.reduce(0) { $0 + $1.count }
        forwardBusy = Array(repeating: 0, count: self.lanes)
        backwardBusy = Array(repeating: 0, count: self.lanes)
    }

    /// Runs `body(lane, window)` for every window, lane j taking windows j, j + lanes, ...; the
    /// first error stops the lanes and is thrown.
    func eachWindow(backward: Bool, _ body: @escaping (Int, Int) throws -> Void) throws {
        let lock = self.lock
        func timed(_ lane: Int, _ i: Int) throws {
            let t0 = DispatchTime.now().uptimeNanoseconds
            try body(lane, i)
            let s = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            lock.withLock { if backward { self.backwardBusy[lane] += s } else { self.forwardBusy[lane] += s } }
        }
        if lanes == 1 {
            for i in windows.indices { try timed(0, i) }
            return
        }
        var failure: Error?
        model.pool.run(tasks: lanes, threads: lanes) { lane, _ in
            var i = lane
            while i < self.windows.count {
                if lock.withLock({ failure != nil }) { return }
                do {
                    try timed(lane, i)
                } catch {
                    lock.withLock { if failure == nil { failure = error } }
                    return
                }
                i += self.lanes
            }
        }
        if let failure { throw failure }
    }

    /// Reports one step done.
    func step(_ phase: String, block: Int?, loss: Double? = nil) {
        guard let progress else { return }
        lock.withLock {
            done += 1
            progress(
                SensitivityProgress(
                    done: done, total: total, tokens: Int(Double(totalTokens) * Double(done) / Double(max(1, total))),
                    elapsed: Date().timeIntervalSince(start), loss: loss, phase: phase, block: block))
        }
    }

    /// Every window through every block (its inputs saved), each block's weight pages dropped after it.
    func forwardPass(observers: [SensitivityAccumulator]?) throws {
        try eachWindow(backward: false) { lane, i in
            try self.laneModels[lane].embed(self.states[i], workspace: self.workspaces[lane])
        }
        for li in 0..<model.layers.count {
            try eachWindow(backward: false) { lane, i in
                let acc = observers?[lane]
                self.laneModels[lane].forwardBlock(
                    li, window: self.states[i], workspace: self.workspaces[lane],
                    observer: acc.map { a in
                        { l, k, x, ldx, t in a.observe(layer: l, kind: k, x: x, ldx: ldx, tokens: t) }
                    })
                self.step("forward", block: li)
            }
            model.releasePages(block: li)
        }
    }

    func run(output: SensitivityOutput?) throws -> SensitivityAccumulator {
        let L = model.layers.count
        let result: SensitivityAccumulator
        var writer: SensitivityWriter?
        switch mode {
        case .activations:
            let accs = laneModels.map { SensitivityAccumulator(model: $0, mode: mode) }
            try forwardPass(observers: accs)
            result = SensitivityAccumulator(model: model, mode: mode, allocate: false)
            result.acc = accs[0].acc
            for a in accs.dropFirst() { result.mergeBlocks(a) }
            finishCounts(result)
            if let output {
                try result.write(to: output.path, dtype: output.dtype, metadata: output.metadata)
            }
        case .fisher:
            try forwardPass(observers: nil)
            try eachWindow(backward: false) { lane, i in
                let loss = try self.laneModels[lane].headLossAndBackward(
                    window: self.states[i], workspace: self.workspaces[lane])
                self.step("head", block: nil, loss: loss)
            }
            model.releaseHeadPages()
            result = SensitivityAccumulator(model: model, mode: mode, allocate: false)
            finishCounts(result)
            if let output {
                writer = try SensitivityWriter(
                    path: output.path, accumulator: result, dtype: output.dtype, metadata: output.metadata)
            }
            do {
                let accs = laneModels.map { SensitivityAccumulator(model: $0, mode: mode, allocate: false) }
                for li in stride(from: L - 1, through: 0, by: -1) {
                    for a in accs { a.allocateBlock(li) }
                    try eachWindow(backward: true) { lane, i in
                        try self.laneModels[lane].backwardBlock(
                            li, window: self.states[i], workspace: self.workspaces[lane], sink: accs[lane])
                        self.step("backward", block: li)
                    }
                    model.releasePages(block: li)
                    for a in accs.dropFirst() {
                        accs[0].mergeBlocks(a)
                        a.releaseBlock(li)
                    }
                    result.acc[li] = accs[0].acc[li]
                    accs[0].releaseBlock(li)
                    if let writer {
                        try writer.write(layer: li, from: result)
                        result.releaseBlock(li)
                    }
                }
                try writer?.finish()
            } catch {
                writer?.abort()
                throw error
            }
        }
        result.convertedWeightBytes = workspaces.map(\.convertedWeightBytes).max() ?? 0
        result.forwardSeconds = forwardBusy.reduce(0, +) / Double(lanes)
        result.backwardSeconds = backwardBusy.reduce(0, +) / Double(lanes)
        return result
    }

    /// Windows, tokens and losses (window order) of the run into `acc`.
    func finishCounts(_ acc: SensitivityAccumulator) {
        acc.windows = windows.count
        acc.tokens = totalTokens
        acc.losses = mode == .fisher ? states.compactMap(\.loss) : []
    }
}
