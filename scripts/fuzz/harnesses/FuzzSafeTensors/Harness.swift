import Foundation
import SqueezeFormats

/// Writes the input to a per-process file (the parsers read paths) and returns its path.
func inputFile(_ data: UnsafePointer<UInt8>, _ size: Int, name: String) -> String {
    let dir = NSTemporaryDirectory() + "squeeze-fuzz-\(getpid())"
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let path = dir + "/" + name
    FileManager.default.createFile(atPath: path, contents: Data(bytes: data, count: size))
    return path
}

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

/// SwiftPM links an executable's entry point as `FuzzSafeTensors_main` (--defsym main=...), which hides
/// libFuzzer's own main: this one hands the arguments to libFuzzer's driver.
@_cdecl("FuzzSafeTensors_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    var c = argc
    var v: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = argv
    return LLVMFuzzerRunDriver(&c, &v, fuzzSafeTensors)
}

@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt) -> CInt
