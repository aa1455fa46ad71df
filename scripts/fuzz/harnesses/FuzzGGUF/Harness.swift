import Foundation
import FuzzSupport
import SqueezeFormats
import SqueezeTokenizer

/// libFuzzer entry: a GGUF file (metadata, tensor infos, dequantization) and the tokenizer in its metadata.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzGGUF(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let p = inputFile(data, size, name: "model.gguf")
    guard let g = try? GGUFFile(path: p) else { return 0 }
    for (_, v) in g.metadata { _ = v.description }
    for t in g.tensors.prefix(16) where t.elementCount <= 1 << 20 { _ = try? g.dequantized(t.name) }
    _ = try? ModelInspector.describeJSON(path: p)
    if let t = try? Tokenizer(gguf: g) {
        let ids = t.encode("Hello world, ünïcode 123")
        _ = t.decode(ids)
        _ = try? t.applyChatTemplate(messages: [ChatMessage(role: "user", content: "hi")], addGenerationPrompt: true)
    }
    return 0
}

/// The entry point SwiftPM links for this target; it runs libFuzzer's driver.
@_cdecl("FuzzGGUF_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    runFuzzDriver(argc, argv, fuzzGGUF)
}
