import Foundation
import FuzzSupport
import SqueezeFormats

/// libFuzzer entry: a safetensors file (header, offsets, data) opened and every tensor read.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSafeTensors(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let p = inputFile(data, size, name: "model.safetensors")
    if let f = try? SafeTensorsFile(path: p) {
        for n in f.tensorNames { _ = try? f.tensor(n).toFloatArray() }
    }
    _ = try? ModelInspector.describe(path: p)
    return 0
}

/// The entry point SwiftPM links for this target; it runs libFuzzer's driver.
@_cdecl("FuzzSafeTensors_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    runFuzzDriver(argc, argv, fuzzSafeTensors)
}
