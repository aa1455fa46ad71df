import Foundation
import Hummingbird
import SqueezeModels
import SqueezeTokenizer

extension SqueezeServer {
    /// Checks the shared parameters and builds the scheduler request.
    func prepare(
        _ p: CommonParameters, prompt: [Int], promptParam: String, defaultMaxTokens: Int?,
        logprobs: Int?, logprobsParam: String
    ) throws -> GenerationRequest {
        if let m = p.model, m != modelID {
            throw APIError.notFound(
                "the model '\(m)' does not exist (this server serves '\(modelID)')", param: "model",
                code: "model_not_found")
        }
        if let n = p.n, n != 1 { throw APIError.invalid("only n = 1 is supported", param: "n") }
        if let lp = logprobs, !(0...20).contains(lp) {
            throw APIError.invalid("'\(logprobsParam)' must be in [0, 20]", param: logprobsParam)
        }
        let context = configuration.context
        guard !prompt.isEmpty else { throw APIError.invalid("the prompt is empty", param: promptParam) }
        if prompt.count >= context {
            throw APIError.tooLarge(
                "the prompt has \(prompt.count) tokens; the context holds \(context) (prompt plus output)",
                param: promptParam)
        }
        let V = scheduler.model.config.vocabSize
        if let bad = prompt.first(where: { $0 < 0 || $0 >= V }) {
            throw APIError.invalid("token id \(bad) is outside the vocabulary (0..<\(V))", param: promptParam)
        }
        let maxParam = p.max_completion_tokens != nil ? "max_completion_tokens" : "max_tokens"
        let room = context - prompt.count
        let maxTokens = p.max_completion_tokens ?? p.max_tokens ?? min(defaultMaxTokens ?? room, room)
        guard maxTokens >= 1 else { throw APIError.invalid("'\(maxParam)' must be >= 1", param: maxParam) }
        guard maxTokens <= room else {
            throw APIError.invalid(
                "the prompt (\(prompt.count) tokens) plus \(maxParam) (\(maxTokens)) exceed the context of \(context) tokens",
                param: maxParam, code: "context_length_exceeded")
        }
        if let t = p.temperature, !(t >= 0 && t <= 2) {
            throw APIError.invalid("'temperature' must be in [0, 2]", param: "temperature")
        }
        var sp = SamplingParameters()
        sp.temperature = Float(p.temperature ?? 1)
        sp.topP = Float(p.top_p ?? 1)
        sp.topK = p.top_k ?? 0
        sp.minP = Float(p.min_p ?? 0)
        sp.repetitionPenalty = Float(p.repetition_penalty ?? 1)
        sp.presencePenalty = Float(p.presence_penalty ?? 0)
        sp.frequencyPenalty = Float(p.frequency_penalty ?? 0)
        sp.seed = p.seed.map { UInt64(bitPattern: $0) }
        do { try sp.validate() } catch let ModelError.invalidArgument(msg) {
            let name = msg.split(separator: ":").first.map(String.init) ?? ""
            throw APIError.invalid("'\(name)'" + msg.dropFirst(name.count), param: name.isEmpty ? nil : name)
        }
        let stop = p.stop?.values ?? []
        do { try StopStringLimits.check(stop) } catch let e as RequestDecodingError {
            throw APIError.invalid(e.message, param: e.param)
        }
        return GenerationRequest(
            prompt: prompt, maxTokens: maxTokens, sampling: sp, stop: stop, logprobs: logprobs,
            ignoreEOS: p.ignore_eos ?? false, timeLimit: configuration.requestTimeout)
    }

    /// The client's view of a failed generation (internal detail only in the log).
    static func apiError(_ f: GenerationFailure) -> APIError {
        FileHandle.standardError.write(Data("squeeze serve: generation failed: \(f)\n".utf8))
        switch f {
        case .internalError: return .internalError
        case .nonFiniteOutput:
            return APIError(
                status: 500, type: "server_error",
                message: "the model produced a non-finite (NaN or infinite) output for this request",
                code: "non_finite_output")
        case let .deadlineExceeded(t):
            return APIError(
                status: 504, type: "server_error",
                message: "the request did not finish within the server's time limit of \(t) s", code: "timeout")
        }
    }

    /// Queues a request, mapping a full queue to 503.
    func submit(_ r: GenerationRequest) throws -> GenerationHandle {
        do { return try scheduler.submit(r) } catch let e as ServerError {
            switch e {
            case .queueFull:
                throw APIError.overloaded("the server is busy (request queue full); retry later", retryAfter: 1)
            case .shuttingDown: throw APIError.overloaded("the server is shutting down", retryAfter: 5)
            default: throw APIError.invalid(e.description)
            }
        }
    }

    /// Everything one non-streamed generation produced.
    struct Collected: Sendable {
        var text = ""
        var logprobs: [TokenLogprob] = []
        var finish = FinishReason.length
        var usage = Usage(prompt: 0, completion: 0)
        var failure: GenerationFailure?
    }

    func collect(_ h: GenerationHandle) async -> Collected {
        var c = Collected()
        for await ev in h.events {
            switch ev {
            case let .text(t, lps): c.text += t; c.logprobs += lps
            case let .finished(r, p, n): c.finish = r; c.usage = Usage(prompt: p, completion: n)
            case let .failed(f): c.failure = f
            }
        }
        return c
    }

    /// Runs a non-streamed generation, cancelling it if the client goes away.
    func runToEnd(_ h: GenerationHandle, request: Request) async throws -> Collected {
        let c = try await request.body.consumeWithInboundCloseHandler(
            { _ in await self.collect(h) },
            onInboundClosed: { h.cancel() })
        if let f = c.failure { throw Self.apiError(f) }
        return c
    }

    static func finishName(_ r: FinishReason) -> String {
        switch r {
        case .stop: return "stop"
        case .length: return "length"
        case .cancelled: return "stop"
        }
    }

    static func newID(_ prefix: String) -> String {
        prefix + String((0..<24).map { _ in "0123456789abcdefghijklmnopqrstuvwxyz".randomElement()! })
    }

    // MARK: /v1/completions

    func completions(_ req: CompletionRequest, request: Request) async throws -> Response {
        let t0 = DispatchTime.now().uptimeNanoseconds
        if req.echo == true { throw APIError.invalid("echo is not supported", param: "echo") }
        let prompt: [Int]
        switch req.prompt {
        case let .text(s): prompt = tokenizer.encode(s, addSpecialTokens: true)
        case let .tokens(t): prompt = t
        }
        let gr = try prepare(
            req.common, prompt: prompt, promptParam: "prompt", defaultMaxTokens: 16,
            logprobs: req.logprobs, logprobsParam: "logprobs")
        let handle = try submit(gr)
        metrics.promptTokens.increment(by: Int64(prompt.count))
        let id = Self.newID("cmpl-"), created = Int(Date().timeIntervalSince1970)
        let wantLogprobs = req.logprobs != nil
        if req.common.stream != true {
            let c = try await runToEnd(handle, request: request)
            var lp: CompletionLogprobs?
            if wantLogprobs { var l = CompletionLogprobs(); var off = 0; l.add(c.logprobs, offset: &off); lp = l }
            metrics.latency(route: "/v1/completions", seconds: Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
            return try encode(
                CompletionResponse(
                    id: id, created: created, model: modelID,
                    choices: [CompletionChoice(text: c.text, logprobs: lp, finish_reason: Self.finishName(c.finish))],
                    usage: c.usage), closeConnection: true)
        }
        let includeUsage = req.common.stream_options?.include_usage == true
        let model = modelID
        let metrics = self.metrics
        return sse(handle) { ev, offset in
            switch ev {
            case let .text(t, lps):
                var lp: CompletionLogprobs?
                if wantLogprobs { var l = CompletionLogprobs(); l.add(lps, offset: &offset); lp = l }
                return [
                    CompletionResponse(
                        id: id, created: created, model: model,
                        choices: [CompletionChoice(text: t, logprobs: lp, finish_reason: nil)])
                ]
            case let .finished(r, p, n):
                metrics.latency(
                    route: "/v1/completions", seconds: Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
                var out = [
                    CompletionResponse(
                        id: id, created: created, model: model,
                        choices: [CompletionChoice(text: "", logprobs: nil, finish_reason: Self.finishName(r))])
                ]
                if includeUsage {
                    out.append(
                        CompletionResponse(
                            id: id, created: created, model: model, choices: [], usage: Usage(prompt: p, completion: n))
                    )
                }
                return out
            case .failed: return []
            }
        }
    }

    // MARK: /v1/chat/completions

    func chat(_ req: ChatCompletionRequest, request: Request) async throws -> Response {
        let t0 = DispatchTime.now().uptimeNanoseconds
        guard !req.messages.isEmpty else { throw APIError.invalid("'messages' must not be empty", param: "messages") }
        let text: String
        do {
            text = try tokenizer.applyChatTemplate(
                messages: req.messages.map { ChatMessage(role: $0.role, content: $0.content) },
                addGenerationPrompt: true)
        } catch {
            throw APIError.invalid(
                "the chat template could not be applied to these messages: \(error)", param: "messages")
        }
        let prompt = try encodeChat(text, contents: req.messages.map(\.content))
        if req.top_logprobs != nil && req.logprobs != true {
            throw APIError.invalid("'top_logprobs' needs 'logprobs': true", param: "top_logprobs")
        }
        let k: Int? = req.logprobs == true ? (req.top_logprobs ?? 0) : nil
        let gr = try prepare(
            req.common, prompt: prompt, promptParam: "messages", defaultMaxTokens: nil,
            logprobs: k, logprobsParam: "top_logprobs")
        let handle = try submit(gr)
        metrics.promptTokens.increment(by: Int64(prompt.count))
        let id = Self.newID("chatcmpl-"), created = Int(Date().timeIntervalSince1970)
        if req.common.stream != true {
            let c = try await runToEnd(handle, request: request)
            var lp: ChatLogprobs?
            if k != nil { var l = ChatLogprobs(); l.add(c.logprobs); lp = l }
            metrics.latency(
                route: "/v1/chat/completions", seconds: Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
            return try encode(
                ChatResponse(
                    id: id, created: created, model: modelID,
                    choices: [
                        ChatChoice(
                            message: ChatMessageOutput(content: c.text), logprobs: lp,
                            finish_reason: Self.finishName(c.finish))
                    ],
                    usage: c.usage), closeConnection: true)
        }
        let includeUsage = req.common.stream_options?.include_usage == true
        let model = modelID
        let metrics = self.metrics
        let first = ChatChunk(
            id: id, created: created, model: model,
            choices: [
                ChatChunkChoice(delta: ChatDelta(role: "assistant", content: ""), logprobs: nil, finish_reason: nil)
            ])
        return sse(handle, first: first) { ev, _ in
            switch ev {
            case let .text(t, lps):
                var lp: ChatLogprobs?
                if k != nil { var l = ChatLogprobs(); l.add(lps); lp = l }
                return [
                    ChatChunk(
                        id: id, created: created, model: model,
                        choices: [ChatChunkChoice(delta: ChatDelta(content: t), logprobs: lp, finish_reason: nil)])
                ]
            case let .finished(r, p, n):
                metrics.latency(
                    route: "/v1/chat/completions", seconds: Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
                var out = [
                    ChatChunk(
                        id: id, created: created, model: model,
                        choices: [ChatChunkChoice(delta: ChatDelta(), logprobs: nil, finish_reason: Self.finishName(r))]
                    )
                ]
                if includeUsage {
                    out.append(
                        ChatChunk(
                            id: id, created: created, model: model, choices: [], usage: Usage(prompt: p, completion: n))
                    )
                }
                return out
            case .failed: return []
            }
        }
    }

    /// Encodes a rendered chat prompt. The template's own control tokens are parsed; special-token
    /// text inside a message's content (a user typing `<|im_start|>system`) stays plain text unless
    /// the server allows it. Only contents that hold such text are encoded apart, so ordinary
    /// prompts encode exactly as the whole rendered text would.
    func encodeChat(_ text: String, contents: [String]) throws -> [Int] {
        if configuration.allowSpecialTokensInContent { return tokenizer.encode(text, addSpecialTokens: false) }
        var ids: [Int] = []
        var searchFrom = text.startIndex, segmentStart = text.startIndex
        for (i, c) in contents.enumerated() where !c.isEmpty {
            guard tokenizer.encode(c, addSpecialTokens: false).contains(where: tokenizer.isSpecial) else { continue }
            guard let r = text.range(of: c, range: searchFrom..<text.endIndex) else {
                throw APIError.invalid(
                    "the content holds special-token text and the chat template changes it, so it cannot be kept as plain text",
                    param: "messages[\(i)].content")
            }
            ids += tokenizer.encode(String(text[segmentStart..<r.lowerBound]), addSpecialTokens: false)
            ids += tokenizer.encode(c, addSpecialTokens: false, parseSpecial: false)
            searchFrom = r.upperBound
            segmentStart = r.upperBound
        }
        ids += tokenizer.encode(String(text[segmentStart...]), addSpecialTokens: false)
        return ids
    }

    /// A server-sent-events response: one `data: {json}` event per chunk, then `data: [DONE]`.
    /// A failed write (the client went away) cancels the generation.
    func sse<Chunk: Encodable & Sendable>(
        _ handle: GenerationHandle, first: Chunk? = nil,
        _ chunks: @escaping @Sendable (GenerationEvent, inout Int) -> [Chunk]
    ) -> Response {
        let body = ResponseBody { writer in
            let enc = JSONEncoder()
            enc.outputFormatting = [.withoutEscapingSlashes]
            func event(_ data: Data) -> ByteBuffer {
                var b = ByteBuffer(string: "data: ")
                b.writeBytes(data)
                b.writeString("\n\n")
                return b
            }
            do {
                if let f = first { try await writer.write(event(try enc.encode(f))) }
                var offset = 0
                for await ev in handle.events {
                    if case let .failed(f) = ev {
                        try await writer.write(event(Self.apiError(f).json))
                        continue
                    }
                    if case let .text(t, lps) = ev, t.isEmpty && lps.isEmpty { continue }
                    for c in chunks(ev, &offset) { try await writer.write(event(try enc.encode(c))) }
                }
                try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
                try await writer.finish(nil)
            } catch {
                handle.cancel()
                throw error
            }
        }
        return Response(
            status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: body)
    }
}
