import Foundation

// Request and response bodies of the OpenAI-compatible API. Unknown request fields are ignored.

/// A string or an array of strings (`stop`).
public enum StringOrArray: Decodable, Sendable, Equatable {
    case one(String)
    case many([String])
    public var values: [String] {
        switch self {
        case let .one(s): return [s];
        case let .many(a): return a
        }
    }
    public init(from d: Decoder) throws {
        let c = try d.singleValueContainer()
        if let s = try? c.decode(String.self) { self = .one(s); return }
        if let a = try? c.decode([String].self) { self = .many(a); return }
        throw DecodingError.typeMismatch(
            String.self, .init(codingPath: d.codingPath, debugDescription: "expected a string or an array of strings"))
    }
}

/// A completion prompt: text, one-element text array, or token ids.
public enum PromptInput: Decodable, Sendable, Equatable {
    case text(String)
    case tokens([Int])
    public init(from d: Decoder) throws {
        let c = try d.singleValueContainer()
        if let s = try? c.decode(String.self) { self = .text(s); return }
        if let a = try? c.decode([String].self) {
            guard a.count == 1 else {
                throw DecodingError.dataCorrupted(
                    .init(codingPath: d.codingPath, debugDescription: "only one prompt per request is supported"))
            }
            self = .text(a[0]); return
        }
        if let t = try? c.decode([Int].self) { self = .tokens(t); return }
        throw DecodingError.typeMismatch(
            String.self,
            .init(
                codingPath: d.codingPath,
                debugDescription: "expected a string, an array of one string, or an array of token ids"))
    }
}

/// Sampling and length fields shared by both generation routes.
public struct CommonParameters: Decodable, Sendable {
    public var model: String?
    public var max_tokens: Int?
    public var max_completion_tokens: Int?
    public var temperature: Double?
    public var top_p: Double?
    public var top_k: Int?
    public var min_p: Double?
    public var stop: StringOrArray?
    public var seed: Int64?
    public var repetition_penalty: Double?
    public var presence_penalty: Double?
    public var frequency_penalty: Double?
    public var n: Int?
    public var stream: Bool?
    public var stream_options: StreamOptions?
    public var ignore_eos: Bool?
}

/// `stream_options`.
public struct StreamOptions: Decodable, Sendable {
    public var include_usage: Bool?
}

/// `POST /v1/completions` body.
public struct CompletionRequest: Decodable, Sendable {
    public var prompt: PromptInput
    /// Top-k alternatives per token (0...20); nil: none.
    public var logprobs: Int?
    public var echo: Bool?
    public var common: CommonParameters
    enum CodingKeys: String, CodingKey { case prompt, logprobs, echo }
    public init(from d: Decoder) throws {
        let c = try d.container(keyedBy: CodingKeys.self)
        prompt = try c.decode(PromptInput.self, forKey: .prompt)
        logprobs = try c.decodeIfPresent(Int.self, forKey: .logprobs)
        echo = try c.decodeIfPresent(Bool.self, forKey: .echo)
        common = try CommonParameters(from: d)
    }
}

/// One chat message in a request (`content` as a string or text parts).
public struct ChatMessageInput: Decodable, Sendable {
    public var role: String
    public var content: String
    enum CodingKeys: String, CodingKey { case role, content }
    struct Part: Decodable { var type: String; var text: String? }
    public init(from d: Decoder) throws {
        let c = try d.container(keyedBy: CodingKeys.self)
        role = try c.decode(String.self, forKey: .role)
        if (try? c.decodeNil(forKey: .content)) ?? false || !c.contains(.content) {
            content = ""
        } else if let s = try? c.decode(String.self, forKey: .content) {
            content = s
        } else {
            let parts = try c.decode([Part].self, forKey: .content)
            content = try parts.enumerated().map { i, p in
                guard p.type == "text", let t = p.text else {
                    throw DecodingError.dataCorrupted(
                        .init(
                            codingPath: c.codingPath + [CodingKeys.content, IndexKey(i)],
                            debugDescription: "only text content parts are supported"))
                }
                return t
            }.joined()
        }
    }
}

struct IndexKey: CodingKey {
    var intValue: Int?
    var stringValue: String { String(intValue ?? 0) }
    init(_ i: Int) { intValue = i }
    init?(stringValue: String) { return nil }
    init?(intValue: Int) { self.intValue = intValue }
}

/// `POST /v1/chat/completions` body.
public struct ChatCompletionRequest: Decodable, Sendable {
    public var messages: [ChatMessageInput]
    public var logprobs: Bool?
    public var top_logprobs: Int?
    public var common: CommonParameters
    enum CodingKeys: String, CodingKey { case messages, logprobs, top_logprobs }
    public init(from d: Decoder) throws {
        let c = try d.container(keyedBy: CodingKeys.self)
        messages = try c.decode([ChatMessageInput].self, forKey: .messages)
        logprobs = try c.decodeIfPresent(Bool.self, forKey: .logprobs)
        top_logprobs = try c.decodeIfPresent(Int.self, forKey: .top_logprobs)
        common = try CommonParameters(from: d)
    }
}

// MARK: Responses

/// The log-probability of one generated token and its most likely alternatives.
public struct TokenLogprob: Sendable, Equatable {
    public var token: String
    public var id: Int
    public var logprob: Float
    /// The `k` most likely tokens at this position, most likely first.
    public var top: [(token: String, id: Int, logprob: Float)]

    public static func == (a: TokenLogprob, b: TokenLogprob) -> Bool {
        a.token == b.token && a.id == b.id && a.logprob == b.logprob && a.top.count == b.top.count
            && zip(a.top, b.top).allSatisfy { $0.id == $1.id && $0.logprob == $1.logprob }
    }
}

/// Token counts.
public struct Usage: Codable, Sendable, Equatable {
    public var prompt_tokens: Int
    public var completion_tokens: Int
    public var total_tokens: Int
    public init(prompt: Int, completion: Int) {
        prompt_tokens = prompt; completion_tokens = completion; total_tokens = prompt + completion
    }
}

/// Legacy completions log-probabilities.
struct CompletionLogprobs: Encodable {
    var tokens: [String] = []
    var token_logprobs: [Float] = []
    var top_logprobs: [[String: Float]] = []
    var text_offset: [Int] = []

    mutating func add(_ lps: [TokenLogprob], offset: inout Int) {
        for l in lps {
            tokens.append(l.token)
            token_logprobs.append(l.logprob)
            var d: [String: Float] = [:]
            for t in l.top where d[t.token] == nil { d[t.token] = t.logprob }
            top_logprobs.append(d)
            text_offset.append(offset)
            offset += l.token.utf8.count
        }
    }
}

/// Chat log-probabilities (`choices[].logprobs.content`).
struct ChatLogprobs: Encodable {
    struct Top: Encodable { var token: String; var logprob: Float; var bytes: [UInt8] }
    struct Entry: Encodable { var token: String; var logprob: Float; var bytes: [UInt8]; var top_logprobs: [Top] }
    var content: [Entry] = []
    mutating func add(_ lps: [TokenLogprob]) {
        for l in lps {
            content.append(
                Entry(
                    token: l.token, logprob: l.logprob, bytes: Array(l.token.utf8),
                    top_logprobs: l.top.map { Top(token: $0.token, logprob: $0.logprob, bytes: Array($0.token.utf8)) }))
        }
    }
}

struct CompletionChoice: Encodable {
    var index = 0
    var text: String
    var logprobs: CompletionLogprobs?
    var finish_reason: String?
    enum CodingKeys: String, CodingKey { case index, text, logprobs, finish_reason }
    func encode(to e: Encoder) throws {
        var c = e.container(keyedBy: CodingKeys.self)
        try c.encode(index, forKey: .index); try c.encode(text, forKey: .text)
        try c.encode(logprobs, forKey: .logprobs); try c.encode(finish_reason, forKey: .finish_reason)
    }
}

struct CompletionResponse: Encodable {
    var id: String
    var object = "text_completion"
    var created: Int
    var model: String
    var choices: [CompletionChoice]
    var usage: Usage?
}

struct ChatMessageOutput: Encodable {
    var role = "assistant"
    var content: String
}

struct ChatChoice: Encodable {
    var index = 0
    var message: ChatMessageOutput
    var logprobs: ChatLogprobs?
    var finish_reason: String
    enum CodingKeys: String, CodingKey { case index, message, logprobs, finish_reason }
    func encode(to e: Encoder) throws {
        var c = e.container(keyedBy: CodingKeys.self)
        try c.encode(index, forKey: .index); try c.encode(message, forKey: .message)
        try c.encode(logprobs, forKey: .logprobs); try c.encode(finish_reason, forKey: .finish_reason)
    }
}

struct ChatResponse: Encodable {
    var id: String
    var object = "chat.completion"
    var created: Int
    var model: String
    var choices: [ChatChoice]
    var usage: Usage
}

struct ChatDelta: Encodable {
    var role: String?
    var content: String?
}

struct ChatChunkChoice: Encodable {
    var index = 0
    var delta: ChatDelta
    var logprobs: ChatLogprobs?
    var finish_reason: String?
    enum CodingKeys: String, CodingKey { case index, delta, logprobs, finish_reason }
    func encode(to e: Encoder) throws {
        var c = e.container(keyedBy: CodingKeys.self)
        try c.encode(index, forKey: .index); try c.encode(delta, forKey: .delta)
        try c.encode(logprobs, forKey: .logprobs); try c.encode(finish_reason, forKey: .finish_reason)
    }
}

struct ChatChunk: Encodable {
    var id: String
    var object = "chat.completion.chunk"
    var created: Int
    var model: String
    var choices: [ChatChunkChoice]
    var usage: Usage?
}

struct ModelList: Encodable {
    struct Entry: Encodable { var id: String; var object = "model"; var created: Int; var owned_by = "squeeze" }
    var object = "list"
    var data: [Entry]
}
