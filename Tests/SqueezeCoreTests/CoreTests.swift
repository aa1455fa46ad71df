import Foundation
import SqueezeCore
import Testing

/// Marks each task it runs, and whether its thread index was in range.
private struct MarkJob: PoolJob {
    let marks: UnsafeMutablePointer<Int32>
    let threadOK: UnsafeMutablePointer<Int32>
    let threads: Int
    func run(task: Int, thread: Int) {
        marks[task] += 1
        threadOK[task] = thread >= 0 && thread < threads ? 1 : 0
    }
}

@Suite struct CoreTests {
    @Test func alignedBuffersAre64ByteAlignedAndZeroed() {
        for n in [0, 1, 3, 17, 1000, 4097] {
            let b = AlignedBuffer<Float>(count: n)
            #expect(Int(bitPattern: b.pointer) % 64 == 0)
            #expect(b.toArray().allSatisfy { $0 == 0 })
        }
        let h = AlignedBuffer<UInt16>([1, 2, 3])
        #expect(h.toArray() == [1, 2, 3])
    }

    /// Every task runs exactly once, whatever the thread count; results are independent of scheduling.
    @Test(arguments: [1, 2, 3, 8])
    func workerPoolRunsEveryTaskOnce(threads: Int) {
        let pool = WorkerPool(threads: threads)
        for count in [0, 1, 2, 7, 100, 10_000] {
            let hits = AlignedBuffer<Int32>(count: max(count, 1))
            pool.run(tasks: count) { t, thread in
                #expect(thread >= 0 && thread < pool.threadCount)
                hits[t] += 1
            }
            #expect(hits.toArray().prefix(count).allSatisfy { $0 == 1 })
            var covered = [Int](repeating: 0, count: count)
            let lock = NSLock()
            pool.parallelFor(count, minBlock: 3) { r, _ in
                lock.lock(); for i in r { covered[i] += 1 }; lock.unlock()
            }
            #expect(covered.allSatisfy { $0 == 1 })
            // parallelFor's blocks are blockLength long (the last one shorter).
            var lengths: [Int] = []
            pool.parallelFor(count, minBlock: 3, blocksPerThread: 2) { r, _ in
                lock.lock(); lengths.append(r.count); lock.unlock()
            }
            let block = pool.blockLength(count, minBlock: 3, blocksPerThread: 2)
            if count > 0 {
                #expect(lengths.count == (count + block - 1) / block)
                #expect(lengths.filter { $0 != block }.count <= 1)
            }
            // The allocation-free run of a PoolJob.
            let marks = AlignedBuffer<Int32>(count: max(count, 1))
            let threadOK = AlignedBuffer<Int32>(count: max(count, 1))
            var job = MarkJob(marks: marks.pointer, threadOK: threadOK.pointer, threads: pool.threadCount)
            pool.run(tasks: count, job: &job)
            #expect(marks.toArray().prefix(count).allSatisfy { $0 == 1 })
            #expect(threadOK.toArray().prefix(count).allSatisfy { $0 == 1 })
        }
    }

    @Test func nestedRunsExecuteSerially() {
        let pool = WorkerPool(threads: 2)
        let lock = NSLock()
        var total = 0
        pool.run(tasks: 4) { _, _ in
            pool.run(tasks: 5) { _, _ in
                lock.lock(); total += 1; lock.unlock()
            }
        }
        #expect(total == 20)
    }

    @Test func mappedFileReadsBytesAndRejectsOutOfRange() throws {
        let path = NSTemporaryDirectory() + "squeeze-core-\(getpid()).bin"
        try Data([1, 2, 3, 4, 5]).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let f = try MappedFile(path: path)
        #expect(f.size == 5)
        #expect(Array(try f.bytes(at: 1, count: 3)) == [2, 3, 4])
        #expect(throws: CoreError.self) { try f.bytes(at: 4, count: 2) }
        #expect(throws: CoreError.self) { try MappedFile(path: path + ".missing") }
    }

    @Test func tensorConversionsRoundTrip() throws {
        let v: [Float] = [0, 1, -2.5, 65504, 1e-3, -0.333]
        let t = Tensor.f32(name: "t", shape: [2, 3], values: v)
        let h = try t.converted(to: .f16)
        #expect(h.dtype == .f16 && h.shape == [2, 3])
        let back = h.toFloatArray()
        for (a, b) in zip(v, back) { #expect(Float(Float16(a)) == b) }
        let bf = try t.converted(to: .bf16).toFloatArray()
        for (a, b) in zip(v, bf) { #expect(abs(a - b) <= abs(a) * 0.004) }
        #expect(throws: CoreError.self) { try t.reshaped([4, 2]) }
        #expect(try t.reshaped([3, 2]).shape == [3, 2])
    }

    @Test func dtypeNames() {
        for d in DType.allCases { #expect(DType(safetensorsName: d.safetensorsName) == d) }
        #expect(DType(safetensorsName: "F8_E4M3") == nil)
        #expect(DType(userName: "fp16") == .f16)
    }
}
