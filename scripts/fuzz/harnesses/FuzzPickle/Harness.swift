import Foundation
import SqueezeFormats

/// libFuzzer entry: a pickle run through the restricted unpickler.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPickle(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    _ = try? RestrictedUnpickler(bytes: UnsafeRawBufferPointer(start: data, count: size), file: "fuzz.pkl").load()
    return 0
}

/// SwiftPM links an executable's entry point as `FuzzPickle_main` (--defsym main=...), which hides
/// libFuzzer's own main: this one hands the arguments to libFuzzer's driver.
@_cdecl("FuzzPickle_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    var c = argc
    var v: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = argv
    return LLVMFuzzerRunDriver(&c, &v, fuzzPickle)
}

@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt) -> CInt
