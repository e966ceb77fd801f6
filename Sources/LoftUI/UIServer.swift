import Foundation
import Hummingbird
import LoftRuns
import LoftTraining

/// `loft ui` as a library: the routes over the run registry, the queue that
/// starts runs, the system sampler, and the chat's engines.
public final class UIServer: @unchecked Sendable {
    public struct Configuration: Sendable {
        public var host = "127.0.0.1"
        public var port = 7860
        /// $LOFT_HOME.
        public var home = RunRegistry.home
        /// Where relative paths in forms start (the directory `loft ui` was started in).
        public var baseDirectory = FileManager.default.currentDirectoryPath
        /// More directories forms may name.
        public var allowedDirectories: [String] = []
        /// The `loft` binary runs are started with.
        public var loftPath: String
        /// A config the new-run form starts from (examples/quickstart.yaml when found).
        public var templateConfig: String?
        public var engineFactory: ChatService.EngineFactory
        public init(loftPath: String, engineFactory: @escaping ChatService.EngineFactory) {
            self.loftPath = loftPath
            self.engineFactory = engineFactory
        }
    }

    public let config: Configuration
    public let registry: RunRegistry
    public let launcher: RunLauncher
    public let auth: UIAuth
    public let monitor = SystemMonitor()
    public let chat: ChatService
    let allowed: AllowedPaths

    /// The password record of a UI on a non-loopback address.
    public static func passwordFile(home: String) -> String { home + "/ui-password" }

    public init(_ config: Configuration, registry: RunRegistry? = nil) throws {
        self.config = config
        self.registry = try registry ?? RunRegistry(path: config.home + "/loft.db")
        launcher = RunLauncher(registry: self.registry, loftPath: config.loftPath, home: config.home)
        let loopback = UIAuth.isLoopback(config.host)
        let record = try? String(contentsOfFile: Self.passwordFile(home: config.home), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        if !loopback && (record ?? "").isEmpty {
            throw RegistryError("loft ui on \(config.host) (not loopback) needs a password: set one with LOFT_UI_PASSWORD or at the prompt on first start")
        }
        auth = UIAuth(requiresLogin: !loopback, passwordRecord: record)
        chat = ChatService(factory: config.engineFactory)
        let cache = NSHomeDirectory() + "/.cache"
        allowed = AllowedPaths(roots: [config.baseDirectory, config.home, cache + "/loft", cache + "/huggingface"]
            + config.allowedDirectories)
    }

    /// Serves until SIGINT/SIGTERM; runs it started keep running. `onRunning`
    /// gets the port listened on (port 0 picks a free one).
    public func run(onRunning: (@Sendable (Int) -> Void)? = nil) async throws {
        let app = Application(router: buildRouter(),
                              configuration: .init(address: .hostname(config.host, port: config.port), serverName: "loft"),
                              onServerRunning: { [config] channel in
                                  let port = channel.localAddress?.port ?? config.port
                                  if let onRunning { onRunning(port) } else {
                                      FileHandle.standardError.write(Data("loft ui: http://\(config.host):\(port)/  (registry \(config.home)/loft.db; Ctrl-C stops the UI, not its runs)\n".utf8))
                                  }
                              })
        let background = Task { await self.backgroundLoop() }
        defer { background.cancel() }
        try await app.runService()
    }

    /// The queue (every second) and the system sampler (every 3 s).
    func backgroundLoop() async {
        var n = 0
        while !Task.isCancelled {
            launcher.tick()
            if n % 3 == 0 { monitor.sample() }
            n += 1
            try? await Task.sleep(nanoseconds: 1_000_000_000)
        }
    }

    func pages(_ request: Request) -> Pages {
        Pages(registry: registry, csrf: auth.csrf(cookieHeader: request.header("Cookie")))
    }

    /// The form of a POST, after its CSRF token (and Origin, when sent) are checked.
    func checkedForm(_ request: inout Request) async throws -> FormData {
        let form = try await request.form()
        guard let expected = auth.csrf(cookieHeader: request.header("Cookie")), form["csrf"] == expected else {
            throw HTTPError(.forbidden, message: "the form's CSRF token is missing or stale; reload the page and submit again")
        }
        // HTTP/1.1's Host arrives as the request's authority (swift-http-types
        // keeps it out of the header fields).
        if let origin = request.header("Origin"), origin != "null" {
            let host = request.head.authority ?? request.header("Host")
            let originHost = URL(string: origin).flatMap { u in u.host.map { $0 + (u.port.map { ":\($0)" } ?? "") } }
            guard let host, originHost == host else {
                throw HTTPError(.forbidden, message: "a form from another origin (\(origin)) was refused")
            }
        }
        return form
    }

    public func buildRouter() -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: AuthMiddleware(auth: auth))

        router.get("/static/loft.js") { _, _ in Reply.text(Assets.script, type: "text/javascript; charset=utf-8") }
        router.get("/static/loft.css") { _, _ in Reply.text(Assets.stylesheet, type: "text/css; charset=utf-8") }

        router.get("/login") { [self] _, _ in Reply.html(loginPage(error: nil)) }
        router.post("/login") { [self] request, _ -> Response in
            var request = request
            let form = try await request.form()
            guard let token = auth.login(password: form["password"] ?? "") else {
                return Reply.html(loginPage(error: "wrong password"), status: .unauthorized)
            }
            return Reply.redirect("/", headers: [("Set-Cookie", "\(UIAuth.cookieName)=\(token); Path=/; HttpOnly; SameSite=Strict")])
        }

        router.get("/") { [self] request, _ in Reply.html(try pages(request).runsList()) }
        router.get("/api/runs") { [self] _, _ -> Response in
            Reply.json(try registry.runs().map { r -> [String: Any] in
                var o: [String: Any] = ["id": r.id, "name": r.name, "kind": r.kind, "status": r.status.rawValue]
                if let s = r.lastStep { o["step"] = s }
                if let l = r.lastLoss { o["loss"] = l }
                if let t = r.totalSteps { o["total_steps"] = t }
                return o
            })
        }
        router.get("/api/runs/:id/metrics") { [self] _, context -> Response in
            let r = try registry.find(context.parameters.require("id"))
            return Reply.json(try registry.metrics(r.id).map { p -> [String: Any] in
                var o: [String: Any] = ["step": p.step]
                for (k, _) in RunCharts.metrics { if let v = RunCharts.value(p, k) { o[k] = v } }
                return o
            })
        }

        router.get("/runs/:id") { [self] request, context -> Response in
            let r = try run(context)
            return Reply.html(try pages(request).runPage(r, log: logTail(r.logPath)))
        }
        router.get("/runs/:id/log") { [self] _, context in Reply.text(logTail(try run(context).logPath)) }
        router.get("/runs/:id/chart/:file") { [self] _, context -> Response in
            let r = try run(context)
            let metric = context.parameters.get("file")?.replacingOccurrences(of: ".svg", with: "") ?? "loss"
            let points = try registry.metrics(r.id)
            let svg = metric == "loss" ? RunCharts.lossSVG(points, title: "loss")
                : RunCharts.metricSVG(points, metric: metric, color: Pages.color(metric))
            return Reply.text(svg, type: "image/svg+xml")
        }
        router.get("/runs/:id/events") { [self] request, context -> Response in
            let r = try run(context)
            let stream = RunEventStream(registry: registry, runID: r.id)
            let after = RunEventStream.resumeStep(lastEventID: request.header("Last-Event-ID"), after: request.query["after"])
            var headers: HTTPFields = [.contentType: "text/event-stream", .cacheControl: "no-cache"]
            headers[.init("X-Accel-Buffering")!] = "no"
            return Response(status: .ok, headers: headers, body: ResponseBody { writer in
                try await stream.run(after: after) { text in try await writer.write(ByteBuffer(string: text)) }
                try await writer.finish(nil)
            })
        }
        router.post("/runs/:id/stop") { [self] request, context -> Response in
            var request = request
            _ = try await checkedForm(&request)
            let r = try run(context)
            try launcher.stop(r.id)
            return Reply.redirect("/runs/\(r.id)")
        }
        router.post("/runs/:id/resume") { [self] request, context -> Response in
            var request = request
            _ = try await checkedForm(&request)
            let r = try run(context)
            try launcher.resume(r.id)
            launcher.tick()
            return Reply.redirect("/runs/\(r.id)")
        }
        router.post("/runs/:id/export") { [self] request, context -> Response in
            var request = request
            let form = try await checkedForm(&request)
            let r = try run(context)
            let job = try startExport(r, what: form["what"] ?? "gguf", quant: form["quant"] ?? "q8_0")
            return Reply.redirect("/runs/\(job.id)")
        }

        router.get("/compare") { [self] request, _ -> Response in
            let ids = request.query.all("runs").flatMap { $0.split(separator: ",").map(String.init) }
            return Reply.html(try pages(request).compare(ids))
        }

        router.get("/new") { [self] request, _ -> Response in
            let id = RunRegistry.newID()
            var form = FormData(pairs: [])
            for f in NewRunForm.fields { if let v = request.query[f.key] { form.pairs.append((f.key, v)) } }
            return Reply.html(NewRunForm.render(pages(request), form: form, id: id, yaml: defaultYAML(), outcome: nil))
        }
        router.post("/new") { [self] request, _ -> Response in
            var request = request
            let form = try await checkedForm(&request)
            let id = form["id"].flatMap { $0.range(of: #"^[0-9]{8}-[0-9]{6}-[0-9a-f]{4}$"#, options: .regularExpression) != nil ? $0 : nil }
                ?? RunRegistry.newID()
            let composer = NewRunForm(form: form, baseDirectory: config.baseDirectory, runDirectory: launcher.directory(for: id), allowed: allowed)
            let outcome = composer.compose()
            if form["action"] == "start", outcome.ok, let cfg = outcome.config {
                let outputName = URL(fileURLWithPath: cfg.outputDir).lastPathComponent
                let name = form.text("name") ?? (cfg.outputDir == launcher.directory(for: id) + "/output" ? "run-" + id.suffix(4) : outputName)
                let r = try launcher.enqueue(yaml: outcome.yaml, name: name, id: id, outputDir: cfg.outputDir, baseModel: cfg.baseModel)
                launcher.tick()
                return Reply.redirect("/runs/\(r.id)")
            }
            let status: HTTPResponse.Status = outcome.ok ? .ok : .unprocessableContent
            return Reply.html(NewRunForm.render(pages(request), form: form, id: id, yaml: form["yaml"] ?? outcome.yaml, outcome: outcome), status: status)
        }

        router.get("/data") { [self] request, _ -> Response in
            let runs = try registry.runs(kind: "train")
            let q = request.query
            let chosen = try q.text("run").map { try registry.find($0) } ?? runs.first
            var cfg: TrainConfig?
            if let c = chosen?.configJSON { cfg = try? JSONDecoder().decode(TrainConfig.self, from: Data(c.utf8)) }
            if cfg == nil, let p = chosen?.configPath { cfg = try? TrainConfig.load(path: p) }
            let row = max(0, q.text("row").flatMap(Int.init) ?? 0)
            return Reply.html(DataPage(pages: pages(request)).render(config: cfg, source: chosen.map { "run \($0.name)" } ?? "",
                                                                   runs: runs, row: row, selectedRun: chosen?.id))
        }

        router.get("/chat") { [self] request, _ in Reply.html(try chatPage(request)) }
        router.get("/chat/stream") { [self] request, _ -> Response in
            let q = request.query
            let (base, adapterRun) = try chatModel(q["model"] ?? "")
            let seed = UInt64(q["seed"] ?? "") ?? 0
            let maxTokens = min(1024, max(1, Int(q["max_tokens"] ?? "") ?? 64))
            let temperature = max(0, Float(q["temperature"] ?? "") ?? 0)
            let prompt = q["prompt"] ?? ""
            let chat = self.chat
            return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: ResponseBody { writer in
                try await chat.stream(baseModel: base, adapterRun: adapterRun, prompt: prompt, seed: seed, maxTokens: maxTokens,
                                      temperature: temperature) { text in try await writer.write(ByteBuffer(string: text)) }
                try await writer.finish(nil)
            })
        }

        router.get("/system") { [self] request, _ -> Response in
            let charts = monitor.charts()
            let body = """
                <h1>System</h1><p class="muted">This machine over the last minutes (sampled every 3 s while the UI runs).</p>
                <section class="charts" id="system"><div class="chart" data-chart="/system/cpu.svg">\(charts.cpu)</div>
                <div class="chart" data-chart="/system/memory.svg">\(charts.memory)</div></section>
                """
            return Reply.html(pages(request).layout("System", active: "/system", body))
        }
        router.get("/system/cpu.svg") { [self] _, _ in Reply.text(monitor.charts().cpu, type: "image/svg+xml") }
        router.get("/system/memory.svg") { [self] _, _ in Reply.text(monitor.charts().memory, type: "image/svg+xml") }
        return router
    }

    func run(_ context: BasicRequestContext) throws -> RunRecord {
        do { return try registry.find(try context.parameters.require("id")) } catch let e as RegistryError {
            throw HTTPError(.notFound, message: e.description)
        }
    }

    func defaultYAML() -> String {
        if let t = config.templateConfig, let y = NewRunForm.templateYAML(t) { return y }
        return "base_model: \ndatasets:\n  - path: \n    type: alpaca\nsequence_len: 512\nadapter: lora\nlora_r: 16\nlora_alpha: 32\nlora_target_modules: all-linear\nmicro_batch_size: 2\nmax_steps: 100\nlearning_rate: 2.0e-4\n"
    }

    /// Merge, GGUF or Ollama export of a run's adapter, as a job with its own log.
    func startExport(_ r: RunRecord, what: String, quant: String) throws -> RunRecord {
        guard let out = r.outputDir, let base = r.baseModel else {
            throw HTTPError(.badRequest, message: "run \(r.id) has no output_dir or base model recorded")
        }
        let quants = ["q8_0", "q4_k_m", "q5_k_m", "q6_k", "q4_0", "f16", "bf16", "f32"]
        guard quants.contains(quant) else { throw HTTPError(.badRequest, message: "quantization \(quant): use one of \(quants.joined(separator: ", "))") }
        let stamp = RunRegistry.newID().suffix(9)
        let args: [String]
        switch what {
        case "merge": args = ["merge", base, "--adapter", out, "--out", out + "/merged-\(stamp)"]
        case "ollama": args = ["export", "ollama", base, "--adapter", out, "--quant", quant, "--out", out + "/ollama-\(stamp)"]
        case "gguf": args = ["export", "gguf", base, "--adapter", out, "--quant", quant, "--out", out + "/model-\(quant)-\(stamp).gguf"]
        default: throw HTTPError(.badRequest, message: "export \(what): use gguf, merge or ollama")
        }
        return try launcher.startJob(kind: "export", name: "\(what)\(what == "merge" ? "" : " " + quant) of \(r.name)", parent: r.id, arguments: args)
    }

    /// "base:RUNID" → the run's base model alone; "RUNID" → its adapter on its base.
    func chatModel(_ key: String) throws -> (base: String, adapter: RunRecord?) {
        let isBase = key.hasPrefix("base:")
        let id = isBase ? String(key.dropFirst(5)) : key
        let r = try registry.find(id)
        guard let base = r.baseModel else { throw HTTPError(.badRequest, message: "run \(r.id) has no base model recorded") }
        return (base, isBase ? nil : r)
    }

    func chatPage(_ request: Request) throws -> String {
        let runs = try registry.runs(kind: "train").filter { r in
            r.outputDir.map { FileManager.default.fileExists(atPath: $0 + "/adapter_config.json") } ?? false
        }
        let chosen = request.query["run"].flatMap { id in runs.first { $0.id == id } } ?? runs.first
        func options(_ selected: String) -> String {
            runs.map { r in
                "<option value=\"base:\(h(r.id))\"\(selected == "base:" + r.id ? " selected" : "")>base model of \(h(r.name))</option>"
                    + "<option value=\"\(h(r.id))\"\(selected == r.id ? " selected" : "")>adapter of \(h(r.name)) (\(h(r.id)))</option>"
            }.joined()
        }
        let body = runs.isEmpty ? "<h1>Chat</h1><p class=\"empty\">No run has an adapter yet: train one, then compare it here with its base model.</p>" : """
            <h1>Chat</h1><p class="muted">The same prompt and seed to both sides, each answer streamed from the generation engine.</p>
            <form id="chat-form"><textarea id="prompt" name="prompt" rows="3" placeholder="Ask something">Who are you?</textarea>
            <div class="actions" style="margin-top:8px"><label>seed <input type="text" name="seed" value="0" size="4"></label>
            <label>max tokens <input type="text" name="max_tokens" value="48" size="4"></label>
            <label>temperature <input type="text" name="temperature" value="0" size="4"></label>
            <button class="button primary" id="ask">Ask both</button></div></form>
            <div class="chat-sides">
            <div class="chat-side" data-side="left"><select aria-label="left model">\(options("base:" + (chosen?.id ?? "")))</select><div class="answer"></div><div class="info"></div></div>
            <div class="chat-side" data-side="right"><select aria-label="right model">\(options(chosen?.id ?? ""))</select><div class="answer"></div><div class="info"></div></div>
            </div>
            """
        return pages(request).layout("Chat", active: "/chat", body)
    }

    func loginPage(error: String?) -> String {
        """
        <!doctype html><html lang="en"><head><meta charset="utf-8"><title>Loft · log in</title><link rel="stylesheet" href="/static/loft.css"></head>
        <body><div class="login"><h1>Loft</h1><form method="post" action="/login"><label>Password<input type="password" name="password" autofocus></label>
        \(error.map { "<div class=\"field-error\">\(h($0))</div>" } ?? "")<button class="button primary">Log in</button></form></div></body></html>
        """
    }
}

/// Sends a UI that needs a login to /login without a session; static files and /login stay open.
struct AuthMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext
    let auth: UIAuth

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard auth.requiresLogin else { return try await next(request, context) }
        let path = request.uri.path
        if path == "/login" || path.hasPrefix("/static/") { return try await next(request, context) }
        if auth.csrf(cookieHeader: request.header("Cookie")) == nil {
            return Reply.redirect("/login")
        }
        return try await next(request, context)
    }
}
