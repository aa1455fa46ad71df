import Foundation

/// Errors raised while loading or using a tokenizer. Each case names the file and, where it
/// applies, the pipeline component at fault.
public enum TokenizerError: Error, CustomStringConvertible, Equatable {
    /// The file could not be read.
    case unreadable(file: String, reason: String)
    /// The file is not valid JSON, or a required field is missing or has the wrong type.
    case malformed(file: String, reason: String)
    /// A pipeline component (normalizer, pre-tokenizer, model, post-processor, decoder) is not supported.
    case unsupportedComponent(file: String, component: String, name: String)
    /// A GGUF `tokenizer.ggml.pre` name that has no known pre-tokenizer.
    case unknownPreTokenizer(file: String, name: String)
    /// Input text is not valid UTF-8.
    case invalidUTF8(file: String, byteOffset: Int)
    /// A chat template could not be parsed or rendered.
    case template(String)
    /// The template called `raise_exception(message)`.
    case templateException(String)
    /// The tokenizer has no chat template.
    case noChatTemplate(file: String)
    /// The chat template stored in `file` (`where`: the field or file that holds it) does not parse;
    /// raised when the tokenizer loads, not on the first chat request.
    case badChatTemplate(file: String, where: String, reason: String)

    public var description: String {
        switch self {
        case let .unreadable(file, reason): return "\(file): cannot read: \(reason)"
        case let .malformed(file, reason): return "\(file): malformed tokenizer: \(reason)"
        case let .unsupportedComponent(file, component, name):
            return "\(file): unsupported \(component) '\(name)'"
        case let .unknownPreTokenizer(file, name):
            return "\(file): unknown pre-tokenizer 'tokenizer.ggml.pre = \(name)'"
        case let .invalidUTF8(file, offset): return "\(file): invalid UTF-8 at byte \(offset)"
        case let .template(msg): return "chat template: \(msg)"
        case let .templateException(msg): return "chat template raised: \(msg)"
        case let .noChatTemplate(file): return "\(file): the tokenizer has no chat template"
        case let .badChatTemplate(file, place, reason): return "\(file): chat template (\(place)) refused: \(reason)"
        }
    }
}
