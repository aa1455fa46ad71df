import Foundation
import SqueezeTokenizer

/// Writes the input to a per-process file (the parsers read paths) and returns its path.
func inputFile(_ data: UnsafePointer<UInt8>, _ size: Int, name: String) -> String {
    let dir = NSTemporaryDirectory() + "squeeze-fuzz-\(getpid())"
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let path = dir + "/" + name
    FileManager.default.createFile(atPath: path, contents: Data(bytes: data, count: size))
    return path
}

/// libFuzzer entry: a .tiktoken rank file, then encode and decode.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTiktoken(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let p = inputFile(data, size, name: "fuzz.tiktoken")
    if let t = try? Tokenizer(tiktokenPath: p) {
        _ = t.decode(t.encode("Hello world, ünïcode 123"))
    }
    return 0
}

/// SwiftPM links an executable's entry point as `FuzzTiktoken_main` (--defsym main=...), which hides
/// libFuzzer's own main: this one hands the arguments to libFuzzer's driver.
@_cdecl("FuzzTiktoken_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    var c = argc
    var v: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = argv
    return LLVMFuzzerRunDriver(&c, &v, fuzzTiktoken)
}

@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt) -> CInt
