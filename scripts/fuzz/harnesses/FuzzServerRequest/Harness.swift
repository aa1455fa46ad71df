import Foundation
import FuzzSupport
import SqueezeServerRequests

/// libFuzzer entry: a request body decoded as both generation requests, as the server does, with
/// the stop strings of an accepted one run through the stop matcher.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzServerRequest(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let body = Data(bytes: data, count: size)
    do {
        let r = try decodeRequestBody(CompletionRequest.self, from: body)
        exercise(r.common)
        if case let .tokens(t) = r.prompt { _ = t.reduce(0, &+) }
    } catch { _ = "\(error)" }
    do {
        let r = try decodeRequestBody(ChatCompletionRequest.self, from: body)
        exercise(r.common)
        _ = r.messages.reduce(0) { $0 + $1.role.utf8.count + $1.content.unicodeScalars.count }
    } catch { _ = "\(error)" }
    return 0
}

/// Feeds text built from the stop strings to a matcher, in pieces, as generation does.
func exercise(_ p: CommonParameters) {
    let stops = p.stop?.values ?? []
    guard (try? StopStringLimits.check(stops)) != nil else { return }
    var m = StopMatcher(stops)
    for s in stops {
        for piece in [String(s.prefix(1)), String(s.dropFirst()), "x", s] {
            if m.push(piece).stopped { m = StopMatcher(stops) }
        }
    }
    _ = m.flush()
}

/// The entry point SwiftPM links for this target; it runs libFuzzer's driver.
@_cdecl("FuzzServerRequest_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    runFuzzDriver(argc, argv, fuzzServerRequest)
}
