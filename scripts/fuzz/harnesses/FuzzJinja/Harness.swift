import Foundation
import FuzzSupport
import SqueezeTokenizer

/// libFuzzer entry: a chat template parsed and rendered for a short conversation.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJinja(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let src = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    guard let t = try? ChatTemplate(src) else { return 0 }
    let msgs = [
        ChatMessage(role: "system", content: "Be brief."), ChatMessage(role: "user", content: "Hi {{ x }}"),
        ChatMessage(role: "assistant", content: "Hello."), ChatMessage(role: "user", content: "Bye"),
    ]
    _ = try? t.render(messages: msgs, addGenerationPrompt: true, extra: ["bos_token": "<s>", "eos_token": "</s>"])
    return 0
}

/// The entry point SwiftPM links for this target; it runs libFuzzer's driver.
@_cdecl("FuzzJinja_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    runFuzzDriver(argc, argv, fuzzJinja)
}
