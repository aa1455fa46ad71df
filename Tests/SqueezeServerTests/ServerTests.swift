import AsyncHTTPClient
import Foundation
import SqueezeServer
import Testing

/// One shared server for the route tests (started on first use).
actor SharedServer {
    static let instance = SharedServer()
    var server: TestServer?
    func get() async throws -> TestServer {
        if let s = server { return s }
        let s = try await TestServer.start()
        server = s
        return s
    }
}

@Suite(.serialized, .enabled(if: haveTestModel, skipNote))
struct ServerRouteTests {
    @Test func healthModelsAndMetrics() async throws {
        let s = try await SharedServer.instance.get()
        let h = try await s.send("GET", "/health")
        #expect(h.status == 200)
        #expect(jsonObject(h.body)["status"] as? String == "ok")
        let m = try await s.send("GET", "/v1/models")
        #expect(m.status == 200)
        let data = jsonObject(m.body)["data"] as? [[String: Any]] ?? []
        #expect(data.first?["id"] as? String == "test-model")
        #expect(data.first?["object"] as? String == "model")
        _ = try await s.post("/v1/completions", ["prompt": "Hello", "max_tokens": 2, "temperature": 0])
        let metrics = try await s.send("GET", "/metrics")
        #expect(metrics.status == 200)
        #expect(metrics.headers["content-type"]?.hasPrefix("text/plain") == true)
        for name in [
            "squeeze_http_requests_total", "squeeze_generated_tokens_total", "squeeze_prompt_tokens_total",
            "squeeze_queue_depth", "squeeze_batch_size_bucket", "squeeze_request_duration_seconds_bucket",
            "squeeze_time_to_first_token_seconds_bucket", "squeeze_decode_step_seconds_bucket",
        ] {
            #expect(metrics.body.contains(name), "metrics lack \(name)")
        }
    }

    @Test func completionNonStreaming() async throws {
        let s = try await SharedServer.instance.get()
        let r = try await s.post(
            "/v1/completions",
            [
                "model": "test-model", "prompt": "The capital of France is",
                "max_tokens": 6, "temperature": 0,
            ])
        #expect(r.status == 200)
        #expect(r.object["object"] as? String == "text_completion")
        #expect((r.object["id"] as? String)?.hasPrefix("cmpl-") == true)
        #expect(!r.object.firstText.isEmpty)
        #expect(r.object.finishReason == "length")
        let u = r.object.usage
        #expect(u["completion_tokens"] == 6)
        #expect((u["prompt_tokens"] ?? 0) > 0)
        #expect(u["total_tokens"] == (u["prompt_tokens"] ?? 0) + 6)
    }

    @Test func chatNonStreaming() async throws {
        let s = try await SharedServer.instance.get()
        let r = try await s.post(
            "/v1/chat/completions",
            [
                "messages": [
                    ["role": "system", "content": "You are brief."], ["role": "user", "content": "Say hi."],
                ],
                "max_tokens": 8, "temperature": 0,
            ])
        #expect(r.status == 200)
        #expect(r.object["object"] as? String == "chat.completion")
        let msg = r.object.choices.first?["message"] as? [String: Any]
        #expect(msg?["role"] as? String == "assistant")
        #expect(!r.object.chatContent.isEmpty)
        #expect(["stop", "length"].contains(r.object.finishReason ?? ""))
        #expect((r.object.usage["prompt_tokens"] ?? 0) > 10)
    }

    @Test func streamingCompletionMatchesNonStreaming() async throws {
        let s = try await SharedServer.instance.get()
        let req: [String: Any] = ["prompt": "Once upon a time", "max_tokens": 8, "temperature": 0]
        let plain = try await s.post("/v1/completions", req)
        var sreq = req
        sreq["stream_options"] = ["include_usage": true]
        let st = try await s.stream("/v1/completions", sreq)
        #expect(st.status == 200)
        #expect(st.contentType.hasPrefix("text/event-stream"))
        #expect(st.events.last == "[DONE]")
        let objs = st.events.dropLast().map(jsonObject)
        #expect(objs.allSatisfy { $0["object"] as? String == "text_completion" })
        let text = objs.map { $0.firstText }.joined()
        #expect(text == plain.object.firstText)
        #expect(objs.compactMap { $0.finishReason }.last == "length")
        #expect(objs.last?.usage["completion_tokens"] == 8)
    }

    @Test func streamingChat() async throws {
        let s = try await SharedServer.instance.get()
        let req: [String: Any] = [
            "messages": [["role": "user", "content": "Name a color."]], "max_tokens": 8, "temperature": 0,
        ]
        let plain = try await s.post("/v1/chat/completions", req)
        let st = try await s.stream("/v1/chat/completions", req)
        #expect(st.status == 200)
        #expect(st.events.last == "[DONE]")
        let objs = st.events.dropLast().map(jsonObject)
        #expect(objs.allSatisfy { $0["object"] as? String == "chat.completion.chunk" })
        let deltas = objs.compactMap { $0.choices.first?["delta"] as? [String: Any] }
        #expect(deltas.first?["role"] as? String == "assistant")
        let text = deltas.compactMap { $0["content"] as? String }.joined()
        #expect(text == plain.object.chatContent)
        #expect(objs.last?.finishReason == plain.object.finishReason)
    }

    @Test func stopStringsEndTheOutput() async throws {
        let s = try await SharedServer.instance.get()
        let req: [String: Any] = ["prompt": "1, 2, 3, 4,", "max_tokens": 12, "temperature": 0]
        let full = try await s.post("/v1/completions", req).object.firstText
        // A stop string from the middle of the greedy output: the reply ends just before it.
        let chars = Array(full)
        try #require(chars.count >= 6, "greedy output too short: \(full)")
        let stop = String(chars[3..<5])
        let expected = String(full[..<full.range(of: stop)!.lowerBound])
        var sreq = req
        sreq["stop"] = [stop, "never-happens"]
        let r = try await s.post("/v1/completions", sreq)
        #expect(r.object.firstText == expected)
        #expect(r.object.finishReason == "stop")
        let st = try await s.stream("/v1/completions", sreq)
        #expect(st.events.dropLast().map { jsonObject($0).firstText }.joined() == expected)
    }

    @Test func logprobs() async throws {
        let s = try await SharedServer.instance.get()
        let r = try await s.post(
            "/v1/completions", ["prompt": "Hello, my name", "max_tokens": 4, "temperature": 0, "logprobs": 3])
        #expect(r.status == 200)
        let lp = r.object.choices.first?["logprobs"] as? [String: Any]
        let tokens = lp?["tokens"] as? [String] ?? []
        let values = lp?["token_logprobs"] as? [Double] ?? []
        let tops = lp?["top_logprobs"] as? [[String: Double]] ?? []
        #expect(tokens.count == 4 && values.count == 4 && tops.count == 4)
        #expect(values.allSatisfy { $0 <= 0 })
        #expect(tokens.joined() == r.object.firstText)
        for (v, t) in zip(values, tops) {
            // Greedy: the chosen token is the most likely one.
            #expect(t.count >= 1)
            #expect(abs((t.values.max() ?? 0) - v) < 1e-4)
        }
        let c = try await s.post(
            "/v1/chat/completions",
            [
                "messages": [["role": "user", "content": "Hi"]], "max_tokens": 3,
                "temperature": 0, "logprobs": true, "top_logprobs": 2,
            ])
        #expect(c.status == 200)
        let content = (c.object.choices.first?["logprobs"] as? [String: Any])?["content"] as? [[String: Any]] ?? []
        #expect(content.count == 3 || c.object.finishReason == "stop")
        #expect(
            content.allSatisfy { ($0["top_logprobs"] as? [Any])?.count == 2 && ($0["logprob"] as? Double ?? 1) <= 0 })
    }

    @Test func seededSamplingIsReproducible() async throws {
        let s = try await SharedServer.instance.get()
        let req: [String: Any] = [
            "prompt": "The weather today", "max_tokens": 8, "temperature": 0.9, "top_p": 0.95,
            "top_k": 50, "min_p": 0.01, "seed": 1234, "repetition_penalty": 1.1,
            "presence_penalty": 0.2, "frequency_penalty": 0.2,
        ]
        let a = try await s.post("/v1/completions", req)
        let b = try await s.post("/v1/completions", req)
        #expect(a.status == 200)
        #expect(a.object.firstText == b.object.firstText)
    }

    @Test func errorsAreOpenAIShapedWithTheFieldNamed() async throws {
        let s = try await SharedServer.instance.get()
        func check(
            _ r: (status: Int, headers: [String: String], body: String), _ status: Int, param: String?,
            sourceLocation: SourceLocation = #_sourceLocation
        ) {
            #expect(r.status == status, "\(r.body)", sourceLocation: sourceLocation)
            let e = jsonObject(r.body).error
            #expect(e["message"] is String, "\(r.body)", sourceLocation: sourceLocation)
            #expect(e["type"] is String, sourceLocation: sourceLocation)
            if let param { #expect(e["param"] as? String == param, "\(r.body)", sourceLocation: sourceLocation) }
            #expect(r.headers["content-type"] == "application/json", sourceLocation: sourceLocation)
        }
        check(try await s.send("POST", "/v1/completions", raw: "{not json"), 400, param: nil)
        check(try await s.send("POST", "/v1/completions", raw: "[1, 2]"), 400, param: nil)
        check(try await s.send("POST", "/v1/completions", json: ["max_tokens": 3]), 400, param: "prompt")
        check(
            try await s.send("POST", "/v1/completions", json: ["prompt": "x", "temperature": "hot"]), 400,
            param: "temperature")
        check(
            try await s.send("POST", "/v1/completions", json: ["prompt": "x", "temperature": -1]), 400,
            param: "temperature")
        check(try await s.send("POST", "/v1/completions", json: ["prompt": "x", "top_p": 0]), 400, param: "top_p")
        check(try await s.send("POST", "/v1/completions", json: ["prompt": "x", "top_k": -3]), 400, param: "top_k")
        check(try await s.send("POST", "/v1/completions", json: ["prompt": "x", "min_p": 2]), 400, param: "min_p")
        check(
            try await s.send("POST", "/v1/completions", json: ["prompt": "x", "presence_penalty": 5]), 400,
            param: "presence_penalty")
        check(
            try await s.send("POST", "/v1/completions", json: ["prompt": "x", "repetition_penalty": 0]), 400,
            param: "repetition_penalty")
        check(
            try await s.send("POST", "/v1/completions", json: ["prompt": "x", "max_tokens": 0]), 400,
            param: "max_tokens")
        check(
            try await s.send("POST", "/v1/completions", json: ["prompt": "x", "max_tokens": 100_000]), 400,
            param: "max_tokens")
        check(try await s.send("POST", "/v1/completions", json: ["prompt": "x", "n": 2]), 400, param: "n")
        check(
            try await s.send("POST", "/v1/completions", json: ["prompt": "x", "logprobs": 99]), 400, param: "logprobs")
        check(try await s.send("POST", "/v1/completions", json: ["prompt": "x", "stop": 5]), 400, param: "stop")
        check(try await s.send("POST", "/v1/completions", json: ["prompt": [999_999_999]]), 400, param: "prompt")
        check(try await s.send("POST", "/v1/completions", json: ["prompt": ""]), 400, param: "prompt")
        check(try await s.send("POST", "/v1/chat/completions", json: ["max_tokens": 2]), 400, param: "messages")
        check(try await s.send("POST", "/v1/chat/completions", json: ["messages": []]), 400, param: "messages")
        check(
            try await s.send("POST", "/v1/chat/completions", json: ["messages": [["content": "hi"]]]), 400,
            param: "messages[0].role")
        check(
            try await s.send("POST", "/v1/chat/completions", json: ["messages": [["role": "user", "content": 7]]]), 400,
            param: "messages[0].content")
        check(
            try await s.send("POST", "/v1/completions", json: ["prompt": "x", "model": "gpt-9"]), 404, param: "model")
        check(try await s.send("GET", "/v1/nothing"), 404, param: nil)
        check(try await s.send("GET", "/v1/completions"), 405, param: nil)
        // A prompt longer than the context (512 here) is 413.
        let long = String(repeating: "word ", count: 800)
        check(
            try await s.send("POST", "/v1/completions", json: ["prompt": long, "max_tokens": 1]), 413, param: "prompt")
        // The server is still fine.
        #expect(try await s.send("GET", "/health").status == 200)
        let ok = try await s.post("/v1/completions", ["prompt": "x", "max_tokens": 1])
        #expect(ok.status == 200)
    }

    @Test func bodyOverTheLimitIs413() async throws {
        let s = try await TestServer.start { $0.maxBodyBytes = 4096 }
        defer { Task { await s.stop() } }
        let big = String(repeating: "a", count: 10_000)
        let r = try await s.send("POST", "/v1/completions", json: ["prompt": big])
        #expect(r.status == 413)
        #expect(jsonObject(r.body).error["message"] is String)
        #expect(try await s.send("GET", "/health").status == 200)
    }

    @Test func apiKeyIsRequired() async throws {
        let s = try await TestServer.start { $0.apiKey = "sekret-key" }
        defer { Task { await s.stop() } }
        #expect(try await s.send("GET", "/health").status == 200)
        let none = try await s.send("GET", "/v1/models")
        #expect(none.status == 401)
        #expect(jsonObject(none.body).error["code"] as? String == "invalid_api_key")
        #expect(try await s.send("GET", "/v1/models", key: "sekret-kex").status == 401)
        #expect(try await s.send("GET", "/v1/models", key: "sekret-key-longer").status == 401)
        #expect(try await s.send("POST", "/v1/completions", json: ["prompt": "x", "max_tokens": 1]).status == 401)
        #expect(try await s.send("GET", "/metrics").status == 401)
        #expect(try await s.send("GET", "/v1/models", key: "sekret-key").status == 200)
        let ok = try await s.post("/v1/completions", ["prompt": "x", "max_tokens": 1], key: "sekret-key")
        #expect(ok.status == 200)
    }

    @Test func fullQueueIs503AndDisconnectCancels() async throws {
        let s = try await TestServer.start {
            $0.maxBatch = 1; $0.queueLimit = 0
        }
        defer { Task { await s.stop() } }
        // A long streaming request occupies the only slot; the client goes away after two events.
        let first = Task {
            var req = HTTPClientRequest(url: s.base + "/v1/completions")
            req.method = .POST
            req.headers.add(name: "Content-Type", value: "application/json")
            req.body = .bytes(
                try JSONSerialization.data(withJSONObject: [
                    "prompt": "Tell me a long story.", "max_tokens": 400, "stream": true, "temperature": 0,
                ]))
            let resp = try await HTTPClient.shared.execute(req, timeout: .seconds(120))
            var seen = 0
            for try await part in resp.body {
                seen += part.readableBytes
                if seen > 100 { break }
            }
        }
        while s.server.scheduler.activeSequences == 0 { try await Task.sleep(for: .milliseconds(10)) }
        let busy = try await s.send("POST", "/v1/completions", json: ["prompt": "x", "max_tokens": 1])
        #expect(busy.status == 503)
        #expect(busy.headers["retry-after"] != nil)
        #expect(jsonObject(busy.body).error["message"] is String)
        _ = try await first.value
        // The abandoned stream is cancelled: the slot frees long before 400 tokens.
        let t0 = Date()
        while s.server.scheduler.activeSequences > 0 && Date().timeIntervalSince(t0) < 20 {
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(s.server.scheduler.activeSequences == 0)
        let after = try await s.post("/v1/completions", ["prompt": "x", "max_tokens": 1])
        #expect(after.status == 200)
        // Shutting down: new work is refused with 503 and Retry-After, health still answers.
        s.server.scheduler.stopAccepting()
        let closing = try await s.send(
            "POST", "/v1/chat/completions", json: ["messages": [["role": "user", "content": "x"]]])
        #expect(closing.status == 503)
        #expect(closing.headers["retry-after"] != nil)
        #expect(try await s.send("GET", "/health").status == 200)
    }

    @Test func concurrentGreedyEqualsOneAtATime() async throws {
        let s = try await TestServer.start { $0.maxBatch = 4 }
        defer { Task { await s.stop() } }
        let prompts = ["The quick brown fox", "In 1492, Columbus", "def fibonacci(n):", "Water boils at"]
        func run(_ p: String, _ i: Int) async throws -> String {
            if i % 2 == 0 {
                return try await s.post("/v1/completions", ["prompt": p, "max_tokens": 8, "temperature": 0]).object
                    .firstText
            }
            return try await s.post(
                "/v1/chat/completions",
                [
                    "messages": [["role": "user", "content": p]], "max_tokens": 8,
                    "temperature": 0,
                ]
            ).object.chatContent
        }
        var serial: [String] = []
        for (i, p) in prompts.enumerated() { serial.append(try await run(p, i)) }
        let concurrent = try await withThrowingTaskGroup(of: (Int, String).self) { g in
            for (i, p) in prompts.enumerated() { g.addTask { (i, try await run(p, i)) } }
            var out = [String](repeating: "", count: prompts.count)
            for try await (i, t) in g { out[i] = t }
            return out
        }
        #expect(serial == concurrent)
        #expect(serial.allSatisfy { !$0.isEmpty })
    }
}

@Suite struct StopMatcherTests {
    @Test func holdsBackPossibleStopPrefixes() {
        var m = StopMatcher(["END", "xyz"])
        #expect(m.push("hello E").text == "hello ")
        #expect(m.push("N").text == "")
        let r = m.push("Dgame")
        #expect(r.text == "" && r.stopped)
        var n = StopMatcher(["END"])
        #expect(n.push("EN").text == "")
        #expect(n.push("x").text == "ENx")
        #expect(n.push("E").text == "")
        #expect(n.flush() == "E")
        var o = StopMatcher([])
        #expect(o.push("END").text == "END")
        var p = StopMatcher(["ab", "b"])
        let q = p.push("xab")
        #expect(q.text == "x" && q.stopped)
    }
}
