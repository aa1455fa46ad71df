import Foundation
import SqueezeFormats
import SqueezeTokenizer

/// Writes the input to a per-process file (the parsers read paths) and returns its path.
func inputFile(_ data: UnsafePointer<UInt8>, _ size: Int, name: String) -> String {
    let dir = NSTemporaryDirectory() + "squeeze-fuzz-\(getpid())"
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let path = dir + "/" + name
    FileManager.default.createFile(atPath: path, contents: Data(bytes: data, count: size))
    return path
}

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

/// SwiftPM links an executable's entry point as `FuzzGGUF_main` (--defsym main=...), which hides
/// libFuzzer's own main: this one hands the arguments to libFuzzer's driver.
@_cdecl("FuzzGGUF_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    var c = argc
    var v: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = argv
    return LLVMFuzzerRunDriver(&c, &v, fuzzGGUF)
}

@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt) -> CInt
