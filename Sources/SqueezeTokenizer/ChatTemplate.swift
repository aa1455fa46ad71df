import Foundation

/// A compiled chat template.
public final class ChatTemplate: @unchecked Sendable {
    let template: JinjaTemplate
    /// The template source.
    public let source: String

    /// Parses a Jinja chat template; errors name the construct that is not supported.
    public init(_ source: String) throws {
        self.source = source
        self.template = try JinjaTemplate(source)
    }

    /// Renders `messages` as transformers' `apply_chat_template(tokenize=False)` does.
    /// `extra` adds variables (for example `bos_token`, `eos_token`, `date_string`).
    public func render(
        messages: [ChatMessage], addGenerationPrompt: Bool, extra: [String: String] = [:]
    ) throws -> String {
        var globals = [String: JValue]()
        globals["messages"] = .array(
            messages.map { m in
                var d = JDict(); d["role"] = .string(m.role); d["content"] = .string(m.content); return .dict(d)
            })
        globals["add_generation_prompt"] = .bool(addGenerationPrompt)
        globals["tools"] = JValue.none
        globals["documents"] = JValue.none
        for (k, v) in extra { globals[k] = .string(v) }
        return try template.render(globals)
    }
}

extension Tokenizer {
    /// Renders the model's chat template for `messages`, with the tokenizer's special token
    /// strings (`bos_token`, `eos_token`, `unk_token`, `pad_token`) available to the template.
    public func applyChatTemplate(messages: [ChatMessage], addGenerationPrompt: Bool) throws -> String {
        guard let t = compiledChatTemplate else { throw TokenizerError.noChatTemplate(file: source) }
        return try t.render(messages: messages, addGenerationPrompt: addGenerationPrompt, extra: specialTokenStrings)
    }
}
