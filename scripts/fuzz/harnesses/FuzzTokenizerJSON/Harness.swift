import Foundation
import FuzzSupport
import SqueezeTokenizer

/// libFuzzer entry: a tokenizer.json (JSON parser and pipeline loader), then encode and decode.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTokenizerJSON(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let p = inputFile(data, size, name: "tokenizer.json")
    if let t = try? Tokenizer(jsonPath: p) {
        let ids = t.encode("Hello world, ünïcode 123 <s>")
        _ = t.decode(ids)
    }
    return 0
}

/// The entry point SwiftPM links for this target; it runs libFuzzer's driver.
@_cdecl("FuzzTokenizerJSON_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    runFuzzDriver(argc, argv, fuzzTokenizerJSON)
}
