import Foundation
import Hummingbird
import XCTest
import LoftEngine
@testable import LoftServer

/// Statuses and OpenAI's error shape; keys, admin key, adapter paths, limits, CORS.
final class ErrorAndSecurityTests: XCTestCase {
    func assertError(_ r: Reply, _ status: Int, param: String? = nil, code: String? = nil, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.status, status, r.text, file: file, line: line)
        XCTAssertEqual(r.headers[.contentType], "application/json", file: file, line: line)
        let e = r.error
        XCTAssertNotNil(e["message"] as? String, "no error.message in \(r.text)", file: file, line: line)
        XCTAssertNotNil(e["type"] as? String, file: file, line: line)
        XCTAssertTrue(e.keys.contains("param") && e.keys.contains("code"), r.text, file: file, line: line)
        if let param { XCTAssertEqual(e["param"] as? String, param, r.text, file: file, line: line) }
        if let code { XCTAssertEqual(e["code"] as? String, code, r.text, file: file, line: line) }
    }

    func testBadRequestsNameTheField() async throws {
        try await withServer { client, _ in
            let cases: [(String, String)] = [
                ("{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"temperature\": \"hot\"}", "temperature"),
                ("{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"temperature\": -1}", "temperature"),
                ("{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"n\": 0}", "n"),
                ("{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"max_tokens\": 1.5}", "max_tokens"),
                ("{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"stop\": [\"\"]}", "stop"),
                ("{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"stream_options\": {\"include_usage\": true}}", "stream_options"),
                ("{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"top_logprobs\": 3}", "top_logprobs"),
                ("{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"response_format\": {\"type\": \"yaml\"}}", "response_format.type"),
                ("{\"messages\": []}", "messages"),
                ("{\"model\": \"fake-base\"}", "messages"),
                ("{\"messages\": [{\"role\": \"robot\", \"content\": \"Hi\"}]}", "messages[0].role"),
                ("{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\", \"image_url\": {}}]}]}", "messages[0].content[0]"),
                ("{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"tool_choice\": \"auto\"}", "tool_choice"),
                ("{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"max_tokens\": 500}", "max_tokens"),
            ]
            for (body, field) in cases {
                let r = try await client.call(.post, "/v1/chat/completions", body)
                self.assertError(r, 400, param: field)
                XCTAssertTrue((r.error["message"] as? String ?? "").contains(field), "the message names \(field): \(r.text)")
            }
            self.assertError(try await client.call(.post, "/v1/chat/completions", "{not json"), 400, code: "invalid_json")
            self.assertError(try await client.call(.post, "/v1/chat/completions", "[1, 2]"), 400, code: "invalid_json")
            self.assertError(try await client.call(.post, "/v1/completions", "{\"prompt\": [-3]}"), 400, param: "prompt")
            self.assertError(try await client.call(.post, "/v1/completions", "{\"prompt\": \"x\", \"max_tokens\": 0}"), 400, param: "max_tokens")
            self.assertError(try await client.call(.post, "/v1/completions", "{\"prompt\": {\"a\": 1}}"), 400, param: "prompt")
        }
    }

    func testStatusesForModelLengthQueueAndRoutes() async throws {
        var options = ServerOptions()
        options.maxBodyBytes = 4096
        try await withServer(options) { client, _ in
            self.assertError(try await client.call(.post, "/v1/chat/completions", chatBody("no-such-model")), 404, param: "model", code: "model_not_found")
            let long = String(repeating: "a", count: 250)
            self.assertError(try await client.call(.post, "/v1/chat/completions", chatBody(nil, long)), 413, param: "messages", code: "context_length_exceeded")
            self.assertError(try await client.call(.post, "/v1/completions", "{\"prompt\": \"\(long)\"}"), 413, param: "prompt")
            let huge = String(repeating: "b", count: 5000)
            self.assertError(try await client.call(.post, "/v1/chat/completions", chatBody(nil, huge)), 413, code: "request_too_large")
            let full = try await client.call(.post, "/v1/chat/completions", chatBody(nil, "FULL"))
            self.assertError(full, 429, code: "queue_full")
            XCTAssertEqual(full.headers[.retryAfter], "3")
            self.assertError(try await client.call(.get, "/v2/nothing"), 404)
            // and the server still answers well-formed requests after all that
            let ok = try await client.call(.post, "/v1/chat/completions", chatBody())
            XCTAssertEqual(ok.status, 200)
        }
    }

    func testLoadingServerAnswers503() async throws {
        let slot = EngineSlot()
        var o = ServerOptions(); o.port = 0
        try await serve(OpenAIServer(slot: slot, options: o)) { client in
            let h = try await client.call(.get, "/health")
            XCTAssertEqual(h.status, 503)
            XCTAssertEqual(h.json["status"] as? String, "loading")
            let r = try await client.call(.post, "/v1/chat/completions", chatBody())
            self.assertError(r, 503, code: "model_loading")
            XCTAssertNotNil(r.headers[.retryAfter])
            slot.install(FakeEngine())
            let r1 = try await client.call(.get, "/health")
            XCTAssertEqual(r1.status, 503, "loaded but not warmed up")
            slot.markReady()
            let r2 = try await client.call(.get, "/health")
            XCTAssertEqual(r2.status, 200)
            let r3 = try await client.call(.post, "/v1/chat/completions", chatBody())
            XCTAssertEqual(r3.status, 200)
        }
    }

    func testAPIKeyAndAdminKey() async throws {
        var options = ServerOptions()
        options.apiKey = "user-key"
        options.adminKey = "admin-key"
        options.adapterDirectory = try makeAdapterDir(["alpha"])
        try await withServer(options) { client, _ in
            let r4 = try await client.call(.get, "/health")
            XCTAssertEqual(r4.status, 200, "health needs no key")
            for (method, path, body) in [(HTTPRequest.Method.get, "/v1/models", nil), (.get, "/metrics", nil), (.post, "/v1/chat/completions", chatBody()),
                                         (.post, "/v1/completions", "{\"prompt\": \"x\"}"), (.post, "/v1/render", chatBody()),
                                         (.get, "/v1/adapters", nil), (.get, "/v1/%61dapters", nil)] as [(HTTPRequest.Method, String, String?)] {
                let none = try await client.call(method, path, body)
                self.assertError(none, 401, code: "invalid_api_key")
                XCTAssertEqual(none.headers[.wwwAuthenticate], "Bearer")
                self.assertError(try await client.call(method, path, body, key: "wrong"), 401)
            }
            let r5 = try await client.call(.post, "/v1/chat/completions", chatBody(), key: "user-key")
            XCTAssertEqual(r5.status, 200)
            let r6 = try await client.call(.get, "/v1/models", key: "admin-key")
            XCTAssertEqual(r6.status, 200, "the admin key works everywhere")
            let load = "{\"name\": \"alpha\", \"path\": \"alpha\"}"
            self.assertError(try await client.call(.post, "/v1/adapters", load, key: "user-key"), 403, code: "admin_key_required")
            self.assertError(try await client.call(.post, "/v1/load_lora_adapter", load, key: "user-key"), 403)
            self.assertError(try await client.call(.get, "/v1/adapters", key: "user-key"), 403)
            let r7 = try await client.call(.post, "/v1/adapters", load, key: "admin-key")
            XCTAssertEqual(r7.status, 200)
            self.assertError(try await client.call(.delete, "/v1/adapters/alpha", key: "user-key"), 403)
            let r8 = try await client.call(.delete, "/v1/adapters/alpha", key: "admin-key")
            XCTAssertEqual(r8.status, 200)
        }
    }

    func testOptionsRefuseAnOpenServerWithoutAKey() throws {
        var o = ServerOptions()
        XCTAssertNoThrow(try o.validate())
        o.host = "0.0.0.0"
        XCTAssertThrowsError(try o.validate()) { XCTAssertTrue("\($0)".contains("--api-key")) }
        o.insecureNoAuth = true
        XCTAssertNoThrow(try o.validate())
        o.insecureNoAuth = false; o.apiKey = "k"
        XCTAssertNoThrow(try o.validate())
        o.apiKey = ""
        XCTAssertThrowsError(try o.validate())
        for h in ["127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]"] { XCTAssertTrue(ServerOptions.isLoopback(h), h) }
        for h in ["0.0.0.0", "::", "192.168.1.4", "example.com", "127.0.0.1.evil.com"] { XCTAssertFalse(ServerOptions.isLoopback(h), h) }
    }

    func testCORSIsOffUnlessAsked() async throws {
        try await withServer { client, _ in
            let r = try await client.call(.get, "/v1/models", headers: [.origin: "http://evil.example"])
            XCTAssertNil(r.headers[.accessControlAllowOrigin])
        }
        var o = ServerOptions()
        o.corsOrigins = ["http://app.example"]
        try await withServer(o) { client, _ in
            let ok = try await client.call(.get, "/v1/models", headers: [.origin: "http://app.example"])
            XCTAssertEqual(ok.headers[.accessControlAllowOrigin], "http://app.example")
            let other = try await client.call(.get, "/v1/models", headers: [.origin: "http://evil.example"])
            XCTAssertNil(other.headers[.accessControlAllowOrigin])
            let pre = try await client.call(.options, "/v1/chat/completions",
                                            headers: [.origin: "http://app.example", .accessControlRequestMethod: "POST"])
            XCTAssertEqual(pre.headers[.accessControlAllowOrigin], "http://app.example")
        }
    }
}

/// Runtime adapter loads: inside --adapter-dir only, checked, named, and gone after unload.
final class AdapterAdminTests: XCTestCase {
    func testLoadUseUnload() async throws {
        var o = ServerOptions()
        let root = try makeAdapterDir(["alpha", "broken"])
        try FileManager.default.removeItem(atPath: root + "/broken/adapter_config.json")
        o.adapterDirectory = root
        try await withServer(o) { client, _ in
            let r = try await client.call(.post, "/v1/adapters", "{\"name\": \"alpha\", \"path\": \"alpha\"}")
            XCTAssertEqual(r.status, 200, r.text)
            XCTAssertEqual(r.json["parent"] as? String, "fake-base")
            let chat = try await client.call(.post, "/v1/chat/completions", chatBody("alpha"))
            XCTAssertEqual(((chat.json["choices"] as? [[String: Any]])?.first?["message"] as? [String: Any])?["content"] as? String, "alpha says hello world.")
            let list = try await client.call(.get, "/v1/adapters")
            XCTAssertEqual((list.json["data"] as? [[String: Any]])?.map { $0["name"] as? String }, ["alpha"])
            let r9 = try await client.call(.post, "/v1/adapters", "{\"name\": \"alpha\", \"path\": \"alpha\"}")
            XCTAssertEqual(r9.status, 400, "the name is taken")
            // vLLM's aliases
            let r10 = try await client.call(.post, "/v1/load_lora_adapter", "{\"lora_name\": \"beta\", \"lora_path\": \"\(root)/alpha\"}")
            XCTAssertEqual(r10.status, 200)
            let r11 = try await client.call(.post, "/v1/unload_lora_adapter", "{\"lora_name\": \"beta\"}")
            XCTAssertEqual(r11.status, 200)
            let r12 = try await client.call(.delete, "/v1/adapters/alpha")
            XCTAssertEqual(r12.status, 200)
            let gone = try await client.call(.post, "/v1/chat/completions", chatBody("alpha"))
            XCTAssertEqual(gone.status, 404)
            let r13 = try await client.call(.delete, "/v1/adapters/alpha")
            XCTAssertEqual(r13.status, 404)
            let r14 = try await client.call(.delete, "/v1/adapters/fake-base")
            XCTAssertEqual(r14.status, 400)
            let broken = try await client.call(.post, "/v1/adapters", "{\"name\": \"b\", \"path\": \"broken\"}")
            XCTAssertEqual(broken.status, 400)
            XCTAssertEqual(broken.error["code"] as? String, "adapter_rejected")
        }
    }

    func testPathsOutsideTheAdapterDirAreRefused() async throws {
        var o = ServerOptions()
        let root = try makeAdapterDir(["alpha"])
        let outside = try makeAdapterDir(["evil"])
        try FileManager.default.createSymbolicLink(atPath: root + "/link", withDestinationPath: outside + "/evil")
        o.adapterDirectory = root
        try await withServer(o) { client, engine in
            for path in ["../\(URL(fileURLWithPath: outside).lastPathComponent)/evil", "alpha/../../x", outside + "/evil", "link", "/etc", root + "/../x"] {
                let r = try await client.call(.post, "/v1/adapters", "{\"name\": \"x\", \"path\": \"\(path)\"}")
                XCTAssertEqual(r.status, 403, "\(path): \(r.text)")
                XCTAssertEqual(r.error["code"] as? String, "path_outside_adapter_dir")
            }
            let r15 = try await client.call(.post, "/v1/adapters", "{\"name\": \"x\", \"path\": \"missing\"}")
            XCTAssertEqual(r15.status, 404)
            let r16 = try await client.call(.post, "/v1/adapters", "{\"name\": \"../x\", \"path\": \"alpha\"}")
            XCTAssertEqual(r16.status, 400)
            let r17 = try await client.call(.post, "/v1/adapters", "{\"name\": \"fake-base\", \"path\": \"alpha\"}")
            XCTAssertEqual(r17.status, 400)
            XCTAssertEqual(engine.models.count, 1, "nothing was loaded")
        }
        // without --adapter-dir, runtime loads are off
        try await withServer { client, _ in
            let r = try await client.call(.post, "/v1/adapters", "{\"name\": \"x\", \"path\": \"\(root)/alpha\"}")
            XCTAssertEqual(r.status, 403)
            XCTAssertEqual(r.error["code"] as? String, "adapter_dir_not_set")
        }
    }
}
