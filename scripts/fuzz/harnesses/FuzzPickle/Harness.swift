import Foundation
import FuzzSupport
import SqueezeFormats

/// libFuzzer entry: a pickle run through the restricted unpickler.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPickle(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    _ = try? RestrictedUnpickler(bytes: UnsafeRawBufferPointer(start: data, count: size), file: "fuzz.pkl").load()
    return 0
}

/// The entry point SwiftPM links for this target; it runs libFuzzer's driver.
@_cdecl("FuzzPickle_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    runFuzzDriver(argc, argv, fuzzPickle)
}
