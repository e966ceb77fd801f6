import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import LoftEngine
import LoftRuns
@testable import LoftUI
import XCTest

/// A running `loft ui` on a free port of 127.0.0.1 with a temporary LOFT_HOME.
final class TestUI: @unchecked Sendable {
    let home: String
    let server: UIServer
    var port = 0
    var task: Task<Void, Error>?

    init(host: String = "127.0.0.1", engine: (any GenerationEngine)? = nil, password: String? = nil) throws {
        home = NSTemporaryDirectory() + "loft-ui-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
        if let password { try UIAuth.hashPassword(password, iterations: 100).write(toFile: UIServer.passwordFile(home: home), atomically: true, encoding: .utf8) }
        var config = UIServer.Configuration(loftPath: "/bin/false", engineFactory: { _ in
            guard let engine else { throw RegistryError("no engine in this test") }
            return engine
        })
        config.host = host
        config.port = 0
        config.home = home
        config.baseDirectory = home
        server = try UIServer(config)
        let ready = DispatchSemaphore(value: 0)
        let got = Box(0)
        task = Task { [server] in try await server.run(onRunning: { p in got.value = p; ready.signal() }) }
        guard ready.wait(timeout: .now() + 30) == .success else { throw RegistryError("the UI did not start") }
        port = got.value
    }

    deinit {
        task?.cancel()
        try? FileManager.default.removeItem(atPath: home)
    }

    struct Reply { var status: Int; var headers: [String: String]; var body: String }

    /// One request; redirects are returned, not followed.
    func request(_ path: String, method: String = "GET", headers: [String: String] = [:], form: [String: String]? = nil) throws -> Reply {
        var req = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(path)")!)
        req.httpMethod = method
        req.timeoutInterval = 60
        for (k, v) in headers { req.setValue(v, forHTTPHeaderField: k) }
        if let form {
            req.setValue("application/x-www-form-urlencoded", forHTTPHeaderField: "Content-Type")
            req.httpBody = Data(form.map { "\(FormData.encode($0.key))=\(FormData.encode($0.value))" }.joined(separator: "&").utf8)
        }
        let done = DispatchSemaphore(value: 0)
        let result = Box<Reply?>(nil)
        let failure = Box<Error?>(nil)
        let session = URLSession(configuration: .ephemeral, delegate: NoRedirects(), delegateQueue: nil)
        session.dataTask(with: req) { data, response, error in
            if let http = response as? HTTPURLResponse {
                var h: [String: String] = [:]
                for (k, v) in http.allHeaderFields { h[String(describing: k).lowercased()] = String(describing: v) }
                result.value = Reply(status: http.statusCode, headers: h, body: String(decoding: data ?? Data(), as: UTF8.self))
            } else { failure.value = error }
            done.signal()
        }.resume()
        done.wait()
        session.finishTasksAndInvalidate()
        if let error = failure.value { throw error }
        return try XCTUnwrap(result.value)
    }

    /// The CSRF token a page's forms carry.
    func csrf(cookie: String? = nil) throws -> String {
        let page = try request("/new", headers: cookie.map { ["Cookie": $0] } ?? [:]).body
        let r = try XCTUnwrap(page.range(of: #"name="csrf" value="[0-9a-f]+""#, options: .regularExpression))
        return String(page[r].dropFirst(#"name="csrf" value=""#.count).dropLast())
    }
}

final class Box<T>: @unchecked Sendable {
    var value: T
    init(_ value: T) { self.value = value }
}

final class NoRedirects: NSObject, URLSessionTaskDelegate {
    func urlSession(_ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse,
                    newRequest request: URLRequest, completionHandler: @escaping (URLRequest?) -> Void) {
        completionHandler(nil)
    }
}

final class UIServerTests: XCTestCase {
    func addRun(_ reg: RunRegistry, status: RunStatus, steps: ClosedRange<Int>, evalAt: Int? = nil) throws -> RunRecord {
        var r = RunRecord(name: "r\(steps.upperBound)", status: status)
        r.totalSteps = 10
        r.configJSON = #"{"learning_rate":0.001}"#
        try reg.insert(r)
        for s in steps { try reg.recordStep(r.id, MetricPoint(step: s, loss: 4 - Double(s) * 0.2, learningRate: 1e-3, gradNorm: 1, tokensPerSecond: 50)) }
        if let e = evalAt { try reg.recordEvalLoss(r.id, step: e, loss: 3.3) }
        return r
    }

    static func ids(_ sse: String) -> [Int] {
        sse.split(separator: "\n").filter { $0.hasPrefix("id: ") }.compactMap { Int($0.dropFirst(4)) }
    }

    /// A client that reconnects with Last-Event-ID gets every point after it, from the registry.
    func testEventsReplayAfterLastEventID() throws {
        let ui = try TestUI()
        let r = try addRun(ui.server.registry, status: .done, steps: 1 ... 6, evalAt: 2)
        let all = try ui.request("/runs/\(r.id)/events")
        XCTAssertEqual(all.status, 200)
        XCTAssertEqual(all.headers["content-type"], "text/event-stream")
        XCTAssertEqual(Self.ids(all.body), [1, 2, 3, 4, 5, 6])
        XCTAssertTrue(all.body.contains(#""eval_loss":3.3"#))
        XCTAssertTrue(all.body.hasSuffix("event: end\ndata: {}\n\n"))
        let after = try ui.request("/runs/\(r.id)/events", headers: ["Last-Event-ID": "3"])
        XCTAssertEqual(Self.ids(after.body), [4, 5, 6])
        XCTAssertTrue(after.body.contains("event: status\ndata: {\"status\":\"done\""))
        // The page's own ?after= (it drew those points) counts the same way.
        XCTAssertEqual(Self.ids(try ui.request("/runs/\(r.id)/events?after=5").body), [6])
    }

    /// A live stream sends each new point once, in order, its eval loss when it comes, and ends with the run;
    /// a reconnect in the middle (Last-Event-ID) completes the series without a gap or a repeat.
    func testLiveStreamAndReconnectLoseNoPoint() async throws {
        let dir = NSTemporaryDirectory() + "loft-sse-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let reg = try RunRegistry(path: dir + "/loft.db")
        let r = try addRun(reg, status: .running, steps: 1 ... 2)
        let stream = RunEventStream(registry: reg, runID: r.id, pollInterval: 0.02)

        // First connection: drops after it has seen step 4.
        actor Collected { var text = ""; func add(_ s: String) { text += s } }
        let first = Collected()
        struct Dropped: Error {}
        let firstTask = Task {
            try await stream.run(after: Int.min) { text in
                await first.add(text)
                if UIServerTests.ids(await first.text).contains(4) { throw Dropped() }
            }
        }
        for s in 3 ... 6 {
            try await Task.sleep(nanoseconds: 60_000_000)
            try reg.recordStep(r.id, MetricPoint(step: s, loss: 1))
            if s == 5 { try reg.recordEvalLoss(r.id, step: 5, loss: 0.9) }
        }
        _ = await firstTask.result
        let seen = Self.ids(await first.text)
        XCTAssertEqual(seen, [1, 2, 3, 4])
        // Reconnect with the last id seen; the run ends meanwhile.
        let second = Collected()
        let secondTask = Task { try await stream.run(after: seen.last!) { await second.add($0) } }
        try await Task.sleep(nanoseconds: 100_000_000)
        try reg.recordStep(r.id, MetricPoint(step: 7, loss: 0.5))
        try await Task.sleep(nanoseconds: 100_000_000)
        try reg.modify(r.id) { $0.status = .done }
        try await secondTask.value
        let text = await second.text
        XCTAssertEqual(Self.ids(text), [5, 6, 7])
        XCTAssertTrue(text.contains(#""eval_loss":0.9"#))
        XCTAssertTrue(text.hasSuffix("event: end\ndata: {}\n\n"))
    }

    /// A run whose process is killed shows as failed in the UI (the queue's turn reconciles it).
    func testKilledRunShowsFailed() throws {
        let ui = try TestUI()
        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/bin/sleep")
        child.arguments = ["60"]
        try child.run()
        var r = RunRecord(name: "victim", status: .running)
        r.host = ProcessIdentity.hostName
        r.pid = Int(child.processIdentifier)
        r.processStart = ProcessIdentity.startToken(pid: child.processIdentifier)
        try ui.server.registry.insert(r)
        func status() throws -> String? {
            let runs = try JSONSerialization.jsonObject(with: Data(try ui.request("/api/runs").body.utf8)) as? [[String: Any]]
            return runs?.first { $0["id"] as? String == r.id }?["status"] as? String
        }
        XCTAssertEqual(try status(), "running")
        kill(child.processIdentifier, SIGKILL)
        child.waitUntilExit()
        var s: String?
        for _ in 0 ..< 50 {
            s = try status()
            if s == "failed" { break }
            Thread.sleep(forTimeInterval: 0.2)
        }
        XCTAssertEqual(s, "failed")
        XCTAssertTrue(try ui.request("/runs/\(r.id)").body.contains("ended without recording an end"))
    }

    func testPagesRenderAndLoadNothingFromAnotherOrigin() throws {
        let ui = try TestUI()
        let a = try addRun(ui.server.registry, status: .done, steps: 1 ... 8, evalAt: 4)
        let b = try addRun(ui.server.registry, status: .stopped, steps: 1 ... 5)
        try ui.server.registry.modify(b.id) { $0.configJSON = #"{"learning_rate":0.0002}"# }
        for path in ["/", "/runs/\(a.id)", "/compare?runs=\(a.id)&runs=\(b.id)", "/new", "/system", "/chat", "/data"] {
            let page = try ui.request(path)
            XCTAssertEqual(page.status, 200, path)
            XCTAssertTrue(page.headers["content-security-policy"]?.contains("default-src 'self'") ?? false, path)
            XCTAssertNil(page.body.range(of: #"(src|href)="(https?:)?//"#, options: .regularExpression), "\(path) names another origin")
        }
        let run = try ui.request("/runs/\(a.id)").body
        XCTAssertTrue(run.contains("data-series=\"train loss\" data-points=\"8\""))
        XCTAssertTrue(run.contains("data-series=\"eval loss\" data-points=\"1\""))
        let compare = try ui.request("/compare?runs=\(a.id)&runs=\(b.id)").body
        XCTAssertTrue(compare.contains("<code>learning_rate</code>"))
        XCTAssertTrue(compare.contains("<code>0.001</code>") && compare.contains("<code>0.0002</code>"))
        XCTAssertEqual(try ui.request("/runs/nope").status, 404)
        XCTAssertEqual(try ui.request("/static/loft.js").headers["content-type"], "text/javascript; charset=utf-8")
    }

    func testFormsNeedTheirCSRFToken() throws {
        let ui = try TestUI()
        let r = try addRun(ui.server.registry, status: .queued, steps: 1 ... 1)
        XCTAssertEqual(try ui.request("/runs/\(r.id)/stop", method: "POST", form: ["csrf": "forged"]).status, 403)
        XCTAssertEqual(try ui.server.registry.run(r.id)?.status, .queued)
        let ok = try ui.request("/runs/\(r.id)/stop", method: "POST", form: ["csrf": try ui.csrf()])
        XCTAssertEqual(ok.status, 303)
        XCTAssertEqual(try ui.server.registry.run(r.id)?.status, .stopped)
        // Another origin's form is refused even with the token.
        let cross = try ui.request("/runs/\(r.id)/resume", method: "POST", headers: ["Origin": "http://evil.example"], form: ["csrf": try ui.csrf()])
        XCTAssertEqual(cross.status, 403)
    }

    /// Every problem of the form is shown at once, beside its field, by `loft train`'s own checks.
    func testNewRunFormShowsEveryProblemBesideItsField() throws {
        let ui = try TestUI()
        let page = try ui.request("/new", method: "POST", form: [
            "csrf": try ui.csrf(), "action": "start", "id": "20260101-000000-abcd",
            "yaml": "base_model: /nonexistent/model.gguf\ndatasets:\n  - path: data.jsonl\n",
            "lora_r": "sixteen", "micro_batch_size": "two", "output_dir": "/etc/loft-out", "dataset_path": "/nonexistent/d.jsonl",
        ])
        XCTAssertEqual(page.status, 422)
        for field in ["lora_r", "micro_batch_size", "output_dir", "dataset_path"] {
            XCTAssertTrue(page.body.contains("data-field-error=\"\(field)\""), "no error beside \(field)")
        }
        XCTAssertTrue(page.body.contains("outside the directories the UI may use"))
        XCTAssertTrue(try ui.server.registry.runs().isEmpty, "nothing is queued from an invalid form")
        // The submitted values stay in the form.
        XCTAssertTrue(page.body.contains("value=\"sixteen\""))
    }

    func testNonLoopbackNeedsThePassword() throws {
        XCTAssertThrowsError(try TestUI(host: "0.0.0.0")) { XCTAssertTrue("\($0)".contains("needs a password")) }
        let ui = try TestUI(host: "0.0.0.0", password: "correct horse")
        let anon = try ui.request("/")
        XCTAssertEqual(anon.status, 303)
        XCTAssertEqual(anon.headers["location"], "/login")
        XCTAssertEqual(try ui.request("/login", method: "POST", form: ["password": "wrong"]).status, 401)
        let login = try ui.request("/login", method: "POST", form: ["password": "correct horse"])
        XCTAssertEqual(login.status, 303)
        let cookie = try XCTUnwrap(login.headers["set-cookie"]?.split(separator: ";").first.map(String.init))
        XCTAssertTrue(login.headers["set-cookie"]?.contains("HttpOnly") ?? false)
        XCTAssertEqual(try ui.request("/", headers: ["Cookie": cookie]).status, 200)
        // A session's forms carry the session's own token.
        let r = try addRun(ui.server.registry, status: .queued, steps: 1 ... 1)
        let other = try ui.request("/login", method: "POST", form: ["password": "correct horse"])
        let otherCookie = try XCTUnwrap(other.headers["set-cookie"]?.split(separator: ";").first.map(String.init))
        XCTAssertNotEqual(otherCookie, cookie)
        XCTAssertEqual(try ui.request("/runs/\(r.id)/stop", method: "POST", headers: ["Cookie": cookie],
                                      form: ["csrf": try ui.csrf(cookie: otherCookie)]).status, 403)
        XCTAssertEqual(try ui.server.registry.run(r.id)?.status, .queued, "another session's token is refused")
        XCTAssertEqual(try ui.request("/runs/\(r.id)/stop", method: "POST", headers: ["Cookie": cookie],
                                      form: ["csrf": try ui.csrf(cookie: cookie)]).status, 303)
        XCTAssertEqual(try ui.server.registry.run(r.id)?.status, .stopped)
    }

    func testPasswordHashIsPBKDF2SHA256() {
        // Vectors from Python's hmac and hashlib.pbkdf2_hmac.
        XCTAssertEqual(hexString(UIAuth.hmac(key: Array("Jefe".utf8), Array("what do ya want for nothing?".utf8))),
                       "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        XCTAssertEqual(hexString(UIAuth.hmac(key: Array(repeating: UInt8(ascii: "k"), count: 100), Array("long key".utf8))),
                       "5903eedefe0bba3f15b658715e41d71f1848739bddf19e497e968df5723dcd56")
        XCTAssertEqual(hexString(UIAuth.pbkdf2(password: Array("passwd".utf8), salt: Array("salt".utf8), iterations: 1)),
                       "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc")
        XCTAssertEqual(hexString(UIAuth.pbkdf2(password: Array("loft password".utf8), salt: Array(0 ..< 16), iterations: 1000)),
                       "dbcc1301315ce8bce539e154b4a6795726c4712fa91cc46ff887efbea605c949")
        let record = UIAuth.hashPassword("s3cret pass", iterations: 50)
        XCTAssertTrue(UIAuth.verify("s3cret pass", record: record))
        XCTAssertFalse(UIAuth.verify("s3cret pas", record: record))
        XCTAssertFalse(UIAuth.verify("s3cret pass", record: "garbage"))
    }

    func testAllowedPaths() {
        let allowed = AllowedPaths(roots: ["/tmp/loft-allowed"])
        XCTAssertNil(allowed.refusal("/tmp/loft-allowed/a/b"))
        XCTAssertNotNil(allowed.refusal("/tmp/loft-allowed-not/x"))
        XCTAssertNotNil(allowed.refusal("/tmp/loft-allowed/../etc"))
        XCTAssertFalse(AllowedPaths.looksLikePath("HuggingFaceTB/SmolLM2-135M"))
        XCTAssertTrue(AllowedPaths.looksLikePath("./model"))
    }
}

/// An engine that answers from a script, to test the chat's wiring without a model.
final class ScriptedEngine: GenerationEngine, @unchecked Sendable {
    var baseName: String { "base" }
    var contextLength: Int { 2048 }
    var isReady: Bool { true }
    var loaded: [ServedModel] = []
    var rendered: [String?] = []
    var models: [ServedModel] { [ServedModel(name: "base", parent: nil, directory: nil, rank: nil)] + loaded }
    func loadAdapter(name: String, directory: String) throws -> ServedModel {
        let m = ServedModel(name: name, parent: "base", directory: directory, rank: 8)
        loaded.append(m)
        return m
    }
    func unloadAdapter(name: String) throws { loaded.removeAll { $0.name == name } }
    func render(_ chat: ChatPrompt, model: String?) throws -> RenderedPrompt {
        rendered.append(model)
        return RenderedPrompt(text: chat.messagesJSON, tokens: [1, 2, 3])
    }
    func tokenize(_ text: String, addSpecialTokens: Bool) -> [Int32] { [] }
    func detokenize(_ tokens: [Int32]) -> String { "" }
    func submit(_ request: GenerationRequest) throws -> AsyncThrowingStream<GenerationEvent, Error> {
        let who = request.model ?? "base"
        return AsyncThrowingStream { c in
            c.yield(.delta(choice: 0, tokens: [7], text: "I am ", logprobs: []))
            c.yield(.delta(choice: 0, tokens: [8], text: who, logprobs: []))
            c.yield(.finished(choice: 0, reason: .stop, usage: Usage(promptTokens: 3, completionTokens: 2)))
            c.finish()
        }
    }
    func generate(_ requests: [GenerationRequest]) throws -> [GenerationResult] { [] }
    func metrics() -> EngineMetrics { EngineMetrics() }
}

final class ChatRouteTests: XCTestCase {
    func testChatStreamsBaseAndAdapterThroughTheEngine() throws {
        let engine = ScriptedEngine()
        let ui = try TestUI(engine: engine)
        let out = ui.home + "/adapter"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        try "{}".write(toFile: out + "/adapter_config.json", atomically: true, encoding: .utf8)
        var r = RunRecord(name: "quick", status: .done)
        r.baseModel = "/models/base.gguf"
        r.outputDir = out
        try ui.server.registry.insert(r)
        XCTAssertTrue(try ui.request("/chat").body.contains("adapter of quick"))
        let adapter = try ui.request("/chat/stream?model=\(r.id)&prompt=Who%20are%20you%3F&seed=1")
        XCTAssertEqual(adapter.headers["content-type"], "text/event-stream")
        XCTAssertTrue(adapter.body.contains("event: delta\ndata: {\"text\":\"I am \"}"), adapter.body)
        XCTAssertTrue(adapter.body.contains("{\"text\":\"run-\(r.id)\"}"), adapter.body)
        XCTAssertTrue(adapter.body.contains("event: done"))
        XCTAssertTrue(adapter.body.contains("\"tokens\":2"))
        let base = try ui.request("/chat/stream?model=base:\(r.id)&prompt=hi")
        XCTAssertTrue(base.body.contains("{\"text\":\"base\"}"), base.body)
        XCTAssertEqual(engine.loaded.map(\.name), ["run-\(r.id)"], "the adapter is loaded once")
        XCTAssertEqual(engine.rendered, ["run-\(r.id)", nil])
        // A run without an adapter yet says so instead of failing the stream.
        var bare = RunRecord(name: "bare", status: .running)
        bare.baseModel = "/models/base.gguf"
        bare.outputDir = ui.home + "/none"
        try ui.server.registry.insert(bare)
        XCTAssertTrue(try ui.request("/chat/stream?model=\(bare.id)&prompt=hi").body.contains("event: failure"))
    }
}
