import ArgumentParser
import Foundation
import SqueezeCore

/// The default model: SmolLM2-135M-Instruct (Q4_1 GGUF) in the cache that scripts/ci/fetch-test-model.sh fills.
public enum DefaultModel {
    public static var cacheDirectory: String {
        getenvString("SQUEEZE_CACHE") ?? (NSHomeDirectory() + "/.cache/squeeze")
    }
    public static var path: String {
        getenvString("SQUEEZE_MODEL") ?? cacheDirectory + "/models/SmolLM2-135M-Instruct.Q4_1.gguf"
    }

    static func requirePath() throws -> String {
        guard FileManager.default.fileExists(atPath: path) else {
            throw ValidationError(
                "no --model given and the default model is not cached at \(path); fetch it with `bash scripts/ci/fetch-test-model.sh` or run `squeeze demo`"
            )
        }
        return path
    }
}
