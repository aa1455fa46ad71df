import Foundation
import FuzzSupport
import SqueezeTokenizer

/// libFuzzer entry: a .tiktoken rank file, then encode and decode.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTiktoken(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let p = inputFile(data, size, name: "fuzz.tiktoken")
    if let t = try? Tokenizer(tiktokenPath: p) {
        _ = t.decode(t.encode("Hello world, ünïcode 123"))
    }
    return 0
}

/// The entry point SwiftPM links for this target; it runs libFuzzer's driver.
@_cdecl("FuzzTiktoken_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    runFuzzDriver(argc, argv, fuzzTiktoken)
}
