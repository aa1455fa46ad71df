import Foundation
import Testing

/// `squeeze quantize` killed with SIGKILL mid-way leaves no output directory (the output appears only
/// by the final rename), and the next run removes the dead run's temporary directory.
@Suite(
    .serialized, .enabled(if: TestModel.available, TestModel.skipNote),
    .enabled(if: SqueezeBinary.available, SqueezeBinary.skipNote))
struct QuantizeKillTests {
    @Test func killedRunLeavesNoOutput() throws {
        let model = try #require(TestModel.path)
        let out = NSTemporaryDirectory() + "squeeze-kill-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: out) }
        let p = try SqueezeBinary.start([
            "quantize", "--model", model, "--output", out, "--bits", "3", "--threads", "1",
        ])
        let partial = out + ".partial-\(p.processIdentifier)"
        // Wait until the run has started writing, then kill it.
        let deadline = Date().addingTimeInterval(60)
        while !FileManager.default.fileExists(atPath: partial + "/model.safetensors.tmp-\(p.processIdentifier)")
            && !FileManager.default.fileExists(atPath: partial) && Date() < deadline && p.isRunning
        {
            usleep(20_000)
        }
        usleep(300_000)
        let wasRunning = p.isRunning
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        #expect(wasRunning, "the run finished before it could be killed")
        #expect(!FileManager.default.fileExists(atPath: out))
        // A later run with the same output removes the dead run's leftover, then fails on nothing.
        let q = try SqueezeBinary.start([
            "quantize", "--model", model, "--output", out, "--bits", "4", "--kmeans", "lloyd",
        ])
        q.waitUntilExit()
        #expect(q.terminationStatus == 0)
        #expect(FileManager.default.fileExists(atPath: out + "/config.json"))
        #expect(!FileManager.default.fileExists(atPath: partial))
    }

    /// SIGTERM or SIGINT mid-way: the run removes its temporary directory, leaves no output, and
    /// ends by the signal (the conventional status), as every command writing through
    /// `AtomicDirectory` does.
    @Test(arguments: [SIGTERM, SIGINT])
    func interruptedRunRemovesItsTemporary(signal: Int32) throws {
        let model = try #require(TestModel.path)
        let out = NSTemporaryDirectory() + "squeeze-signal-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: out) }
        let p = try SqueezeBinary.start([
            "quantize", "--model", model, "--output", out, "--bits", "3", "--threads", "1",
        ])
        let partial = out + ".partial-\(p.processIdentifier)"
        let deadline = Date().addingTimeInterval(60)
        while !FileManager.default.fileExists(atPath: partial) && Date() < deadline && p.isRunning { usleep(20_000) }
        usleep(300_000)
        let wasWriting = p.isRunning && FileManager.default.fileExists(atPath: partial)
        kill(p.processIdentifier, signal)
        p.waitUntilExit()
        #expect(wasWriting, "the run had not started writing, or had finished, when signalled")
        #expect(
            p.terminationReason == .uncaughtSignal && p.terminationStatus == signal,
            "ended with \(p.terminationReason == .exit ? "exit status" : "signal") \(p.terminationStatus)")
        #expect(!FileManager.default.fileExists(atPath: partial))
        #expect(!FileManager.default.fileExists(atPath: out))
    }
}
