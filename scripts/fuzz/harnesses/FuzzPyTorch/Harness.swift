import Foundation
import FuzzSupport
import SqueezeFormats

/// libFuzzer entry: a torch.save zip (archive, restricted unpickler, tensor views) opened and every tensor read.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPyTorch(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let p = inputFile(data, size, name: "model.pt")
    if let ck = try? PyTorchCheckpoint(path: p) {
        for n in ck.tensorNames { _ = try? ck.tensor(n) }
    }
    return 0
}

/// The entry point SwiftPM links for this target; it runs libFuzzer's driver.
@_cdecl("FuzzPyTorch_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    runFuzzDriver(argc, argv, fuzzPyTorch)
}
