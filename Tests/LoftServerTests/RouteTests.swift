import Foundation
import Hummingbird
import XCTest
import LoftEngine
@testable import LoftServer

/// Every route against the fake engine, at the HTTP level.
final class RouteTests: XCTestCase {
    func testHealthModelsAndLineage() async throws {
        let dir = try makeAdapterDir(["alpha"])
        let engine = FakeEngine()
        _ = try engine.loadAdapter(name: "alpha", directory: dir + "/alpha")
        try await withServer(engine: engine) { client, _ in
            let health = try await client.call(.get, "/health")
            XCTAssertEqual(health.status, 200)
            XCTAssertEqual(health.json["status"] as? String, "ok")
            let models = try await client.call(.get, "/v1/models")
            XCTAssertEqual(models.status, 200)
            XCTAssertEqual(models.json["object"] as? String, "list")
            let data = models.json["data"] as? [[String: Any]] ?? []
            XCTAssertEqual(data.map { $0["id"] as? String }, ["fake-base", "alpha"])
            XCTAssertTrue(data[0]["parent"] is NSNull)
            XCTAssertEqual(data[1]["parent"] as? String, "fake-base")
            XCTAssertEqual(data[1]["object"] as? String, "model")
            XCTAssertEqual(data[0]["max_model_len"] as? Int, 200)
            let one = try await client.call(.get, "/v1/models/alpha")
            XCTAssertEqual(one.json["id"] as? String, "alpha")
            let missing = try await client.call(.get, "/v1/models/nope")
            XCTAssertEqual(missing.status, 404)
        }
    }

    func testChatCompletionShape() async throws {
        try await withServer { client, engine in
            let r = try await client.call(.post, "/v1/chat/completions", chatBody("fake-base", extra: ", \"seed\": 7, \"top_k\": 5, \"min_p\": 0.1, \"top_p\": 0.9"))
            XCTAssertEqual(r.status, 200, r.text)
            XCTAssertEqual(r.json["object"] as? String, "chat.completion")
            XCTAssertTrue((r.json["id"] as? String ?? "").hasPrefix("chatcmpl-"))
            XCTAssertEqual(r.json["model"] as? String, "fake-base")
            let choice = (r.json["choices"] as? [[String: Any]])?.first ?? [:]
            let message = choice["message"] as? [String: Any] ?? [:]
            XCTAssertEqual(message["role"] as? String, "assistant")
            XCTAssertEqual(message["content"] as? String, "base says hello world.")
            XCTAssertEqual(choice["finish_reason"] as? String, "stop")
            let usage = r.json["usage"] as? [String: Int] ?? [:]
            // "<user>Hi\n<assistant>" is 20 scalars; the answer 22.
            XCTAssertEqual(usage["prompt_tokens"], 20)
            XCTAssertEqual(usage["completion_tokens"], 22)
            XCTAssertEqual(usage["total_tokens"], 42)
            let sent = try XCTUnwrap(engine.lastRequest)
            XCTAssertNil(sent.model)
            XCTAssertEqual(sent.sampling.seed, 7)
            XCTAssertEqual(sent.sampling.topK, 5)
            XCTAssertEqual(sent.sampling.minP, 0.1, accuracy: 1e-6)
            XCTAssertEqual(sent.sampling.topP, 0.9, accuracy: 1e-6)
            XCTAssertEqual(sent.sampling.temperature, 0)
            XCTAssertEqual(sent.maxTokens, 200 - 20, "no max_tokens: the rest of the context")
        }
    }

    func testMaxTokensStopAndN() async throws {
        try await withServer { client, engine in
            let r = try await client.call(.post, "/v1/chat/completions", chatBody(extra: ", \"max_completion_tokens\": 4, \"n\": 3"))
            let choices = r.json["choices"] as? [[String: Any]] ?? []
            XCTAssertEqual(choices.count, 3)
            XCTAssertEqual(choices.map { $0["index"] as? Int }, [0, 1, 2])
            XCTAssertEqual(choices.map { ($0["message"] as? [String: Any])?["content"] as? String }, Array(repeating: "base", count: 3))
            XCTAssertEqual(choices.map { $0["finish_reason"] as? String }, Array(repeating: "length", count: 3))
            let s = try await client.call(.post, "/v1/chat/completions", chatBody(extra: ", \"stop\": [\" hello\"], \"max_tokens\": 30"))
            XCTAssertEqual(((s.json["choices"] as? [[String: Any]])?.first?["message"] as? [String: Any])?["content"] as? String, "base says")
            XCTAssertEqual(engine.lastRequest?.stopStrings, [" hello"])
            XCTAssertEqual(engine.lastRequest?.maxTokens, 30)
        }
    }

    func testStreamFramingWithIncludeUsage() async throws {
        try await withServer { client, _ in
            let r = try await client.call(.post, "/v1/chat/completions",
                                          chatBody(extra: ", \"stream\": true, \"stream_options\": {\"include_usage\": true}, \"n\": 2, \"max_tokens\": 5"))
            XCTAssertEqual(r.status, 200)
            XCTAssertEqual(r.headers[.contentType]?.hasPrefix("text/event-stream"), true)
            XCTAssertTrue(r.text.hasSuffix("data: [DONE]\n\n"))
            for block in r.text.components(separatedBy: "\n\n").dropLast() { XCTAssertTrue(block.hasPrefix("data: "), block) }
            let events = r.events
            XCTAssertEqual(events.last, "[DONE]")
            let chunks = events.dropLast().map { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any] ?? [:] }
            // Every chunk but the last carries "usage": null; the last has empty choices and the usage.
            for c in chunks.dropLast() {
                XCTAssertTrue(c["usage"] is NSNull, "\(c)")
                XCTAssertEqual((c["choices"] as? [Any])?.count, 1)
                XCTAssertEqual(c["object"] as? String, "chat.completion.chunk")
            }
            let last = try XCTUnwrap(chunks.last)
            XCTAssertEqual((last["choices"] as? [Any])?.count, 0)
            XCTAssertEqual((last["usage"] as? [String: Int])?["completion_tokens"], 10)
            XCTAssertEqual((last["usage"] as? [String: Int])?["prompt_tokens"], 20)
            // Per choice: a role chunk first, then the text, then one finish chunk.
            for index in 0..<2 {
                let mine = chunks.dropLast().compactMap { ($0["choices"] as? [[String: Any]])?.first }.filter { $0["index"] as? Int == index }
                XCTAssertEqual((mine.first?["delta"] as? [String: Any])?["role"] as? String, "assistant")
                let text = mine.compactMap { ($0["delta"] as? [String: Any])?["content"] as? String }.joined()
                XCTAssertEqual(text, "base ")
                XCTAssertEqual(mine.compactMap { $0["finish_reason"] as? String }, ["length"])
            }
        }
    }

    func testStreamWithoutIncludeUsageHasNoUsage() async throws {
        try await withServer { client, _ in
            let r = try await client.call(.post, "/v1/chat/completions", chatBody(extra: ", \"stream\": true"))
            for e in r.events.dropLast() { XCTAssertFalse(e.contains("\"usage\""), e) }
            let text = r.events.dropLast().compactMap {
                (((try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any])?["choices"] as? [[String: Any]])?.first
            }.compactMap { ($0["delta"] as? [String: Any])?["content"] as? String }.joined()
            XCTAssertEqual(text, "base says hello world.")
        }
    }

    func testChatLogprobs() async throws {
        try await withServer { client, _ in
            let r = try await client.call(.post, "/v1/chat/completions", chatBody(extra: ", \"logprobs\": true, \"top_logprobs\": 2, \"max_tokens\": 3"))
            let content = (((r.json["choices"] as? [[String: Any]])?.first?["logprobs"] as? [String: Any])?["content"] as? [[String: Any]]) ?? []
            XCTAssertEqual(content.map { $0["token"] as? String }, ["b", "a", "s"])
            XCTAssertEqual(content.first?["logprob"] as? Double, -0.5)
            XCTAssertEqual(content.first?["bytes"] as? [Int], [98])
            XCTAssertEqual((content.first?["top_logprobs"] as? [[String: Any]])?.map { $0["token"] as? String }, ["b", "x"])
        }
    }

    /// What lm-evaluation-harness's local-completions sends to score log-likelihoods.
    func testCompletionsEchoLogprobsOnTokenPrompts() async throws {
        try await withServer { client, engine in
            let r = try await client.call(.post, "/v1/completions",
                                          "{\"model\": \"fake-base\", \"prompt\": [[72, 105, 33], [65, 66]], \"max_tokens\": 1, \"echo\": true, \"logprobs\": 1, \"temperature\": 0}")
            XCTAssertEqual(r.status, 200, r.text)
            XCTAssertEqual(r.json["object"] as? String, "text_completion")
            let choices = r.json["choices"] as? [[String: Any]] ?? []
            XCTAssertEqual(choices.map { $0["index"] as? Int }, [0, 1])
            XCTAssertEqual(choices.map { $0["text"] as? String }, ["Hi!b", "ABb"])
            let lp = choices[0]["logprobs"] as? [String: Any] ?? [:]
            XCTAssertEqual(lp["tokens"] as? [String], ["H", "i", "!", "b"])
            let tlp = lp["token_logprobs"] as? [Any] ?? []
            XCTAssertTrue(tlp[0] is NSNull)
            XCTAssertEqual(tlp.dropFirst().map { $0 as? Double }, [-1, -1, -0.5])
            let top = lp["top_logprobs"] as? [Any] ?? []
            XCTAssertTrue(top[0] is NSNull)
            XCTAssertEqual(top[1] as? [String: Double], ["i": -1])
            XCTAssertEqual(top[3] as? [String: Double], ["b": -0.5])
            XCTAssertEqual(lp["text_offset"] as? [Int], [0, 1, 2, 3])
            XCTAssertEqual(engine.lastRequest?.promptLogprobs, true)
            XCTAssertEqual((r.json["usage"] as? [String: Int])?["prompt_tokens"], 5)
        }
    }

    func testCompletionsTextPromptDefaultsAndStream() async throws {
        try await withServer { client, engine in
            let plain = try await client.call(.post, "/v1/completions", "{\"prompt\": \"Once\", \"temperature\": 0}")
            XCTAssertEqual(engine.lastRequest?.maxTokens, 16, "the legacy endpoint's default")
            XCTAssertEqual((plain.json["choices"] as? [[String: Any]])?.first?["text"] as? String, "base says hello ")
            let s = try await client.call(.post, "/v1/completions",
                                          "{\"prompt\": \"Once\", \"max_tokens\": 4, \"stream\": true, \"echo\": true, \"stream_options\": {\"include_usage\": true}}")
            let chunks = s.events.dropLast().map { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any] ?? [:] }
            let texts = chunks.compactMap { ($0["choices"] as? [[String: Any]])?.first?["text"] as? String }
            XCTAssertEqual(texts.joined(), "Oncebase")
            XCTAssertEqual(texts.first, "Once", "the echo comes first")
            XCTAssertEqual((chunks.last?["usage"] as? [String: Int])?["completion_tokens"], 4)
            XCTAssertEqual(s.events.last, "[DONE]")
        }
    }

    func testJSONResponseFormatReachesTheEngine() async throws {
        try await withServer { client, engine in
            let schema = "{\"type\": \"object\", \"properties\": {\"answer\": {\"type\": \"integer\"}}, \"required\": [\"answer\"]}"
            let r = try await client.call(.post, "/v1/chat/completions",
                                          chatBody(extra: ", \"response_format\": {\"type\": \"json_schema\", \"json_schema\": {\"name\": \"a\", \"schema\": \(schema)}}"))
            XCTAssertEqual(r.status, 200)
            XCTAssertEqual(engine.lastRequest?.constraint, .jsonSchema(schema), "the schema text keeps its key order")
            _ = try await client.call(.post, "/v1/chat/completions", chatBody(extra: ", \"response_format\": {\"type\": \"json_object\"}"))
            XCTAssertEqual(engine.lastRequest?.constraint, .jsonObject)
        }
    }

    func testRenderAndMetrics() async throws {
        try await withServer { client, _ in
            let r = try await client.call(.post, "/v1/render", "{\"messages\": [{\"role\": \"developer\", \"content\": [{\"type\": \"text\", \"text\": \"Be brief\"}]}, {\"role\": \"user\", \"content\": \"Hi\"}]}")
            XCTAssertEqual(r.status, 200, r.text)
            XCTAssertEqual(r.json["prompt"] as? String, "<system>Be brief\n<user>Hi\n<assistant>")
            XCTAssertEqual((r.json["token_ids"] as? [Int])?.count, r.json["prompt_tokens"] as? Int)
            let p = try await client.call(.post, "/v1/render", "{\"prompt\": [72, 105]}")
            XCTAssertEqual(p.json["prompt"] as? String, "Hi")
            _ = try await client.call(.post, "/v1/chat/completions", chatBody())
            let m = try await client.call(.get, "/metrics")
            XCTAssertEqual(m.status, 200)
            XCTAssertEqual(m.headers[.contentType], "text/plain; version=0.0.4; charset=utf-8")
            for needle in ["loft_requests_total{model=\"fake-base\"}", "loft_http_requests_total{route=\"/v1/chat/completions\",status=\"200\"} 1",
                           "loft_time_to_first_token_seconds_count{model=\"fake-base\"} 1", "loft_queue_depth 0", "loft_batch_size 0",
                           "loft_max_adapters_in_one_step 2", "loft_decode_tokens_per_second", "# TYPE loft_requests_total counter"] {
                XCTAssertTrue(m.text.contains(needle), "missing \(needle) in\n\(m.text)")
            }
        }
    }

    func testOneLogLinePerRequest() async throws {
        let lines = LockedLines()
        try await withServer(log: { lines.append($0) }) { client, _ in
            _ = try await client.call(.post, "/v1/chat/completions", chatBody())
            _ = try await client.call(.get, "/v1/models/nope")
        }
        XCTAssertEqual(lines.all.count, 2)
        XCTAssertTrue(lines.all[0].contains("POST /v1/chat/completions 200 model=fake-base prompt=20 completion=22 ttft="), lines.all[0])
        XCTAssertTrue(lines.all[1].contains("GET /v1/models/nope 404"), lines.all[1])
    }

    /// A client that closes its connection mid-answer cancels its request.
    func testDisconnectCancelsTheRequest() async throws {
        try await withServer { client, engine in
            let port = client.port
            for stream in [true, false] {
                let before = engine.cancelled.count
                let body = chatBody(nil, "SLOW", extra: stream ? ", \"stream\": true" : "")
                _ = try rawExchange(port: port, request: httpRequest("POST", "/v1/chat/completions", body: body), readBytes: stream ? 200 : 0, holdSeconds: stream ? 0 : 0.3)
                let cancelled = await eventually(2) { engine.cancelled.count == before + 1 }
                XCTAssertTrue(cancelled, "stream=\(stream): the engine saw no cancel")
            }
            let m = try await client.call(.get, "/metrics")
            XCTAssertTrue(m.text.contains("loft_client_disconnects_total 2"), m.text)
        }
    }
}

final class LockedLines: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []
    func append(_ s: String) { lock.withLock { lines.append(s) } }
    var all: [String] { lock.withLock { lines } }
}

/// A temporary --adapter-dir holding adapter directories (each with an adapter_config.json).
func makeAdapterDir(_ names: [String]) throws -> String {
    let root = FileManager.default.temporaryDirectory.appendingPathComponent("loft-serve-\(UUID().uuidString)").path
    for n in names {
        try FileManager.default.createDirectory(atPath: root + "/" + n, withIntermediateDirectories: true)
        try "{}".write(toFile: root + "/" + n + "/adapter_config.json", atomically: true, encoding: .utf8)
    }
    try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    return root
}
