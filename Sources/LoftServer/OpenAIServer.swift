import Foundation
import Hummingbird
import Logging
import NIOCore
import LoftEngine
import LoftTemplates

/// The request context: Hummingbird's, plus the connection (to notice a
/// client leaving) and what the access log line reports.
public struct ServeRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public let channel: (any Channel)?
    let info = RequestInfo()

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }
}

/// What one request did, for its log line and the metrics.
final class RequestInfo: @unchecked Sendable {
    private let lock = NSLock()
    let started = Date()
    private(set) var model: String?
    private(set) var stream = false
    private(set) var usage = Usage(promptTokens: 0, completionTokens: 0)
    private(set) var firstToken: Double?

    func set(model: String, stream: Bool) { lock.withLock { self.model = model; self.stream = stream } }
    func add(usage u: Usage) { lock.withLock { usage.promptTokens += u.promptTokens; usage.completionTokens += u.completionTokens } }
    func setFirstToken(_ s: Double) { lock.withLock { if firstToken == nil { firstToken = s } } }
    var summary: String {
        lock.withLock {
            guard let model else { return "" }
            var s = " model=\(model) prompt=\(usage.promptTokens) completion=\(usage.completionTokens)"
            if let t = firstToken { s += String(format: " ttft=%.3fs", t) }
            if stream { s += " stream" }
            return s
        }
    }
}

struct Meta: Sendable {
    let id: String
    let model: String
    let created: Int
    let started: Date
}

struct ChoiceState {
    var text = ""
    var logprobs: [TokenLogprob] = []
    var finish: FinishReason?
}

struct Collected {
    var choices: [Int: ChoiceState] = [:]
    var promptLogprobs: [Int: [TokenLogprob?]] = [:]
    var usage = Usage(promptTokens: 0, completionTokens: 0)
}

/// An OpenAI-compatible HTTP server over any `GenerationEngine`: chat and text
/// completions (streamed or not), models with their lineage, adapters loaded
/// and unloaded at run time, the rendered prompt, health and Prometheus metrics.
public final class OpenAIServer: Sendable {
    public let options: ServerOptions
    public let slot: EngineSlot
    let metrics = ServerMetrics()
    let log: @Sendable (String) -> Void
    /// Adapter loads read files and check shapes: off the request threads, one at a time.
    let adapterQueue = DispatchQueue(label: "loft.serve.adapters")
    static let fingerprint = "loft"

    /// `log` receives one line per request (the CLI prints it to stderr).
    public init(slot: EngineSlot, options: ServerOptions, log: @escaping @Sendable (String) -> Void = { _ in }) {
        self.slot = slot; self.options = options; self.log = log
    }

    public convenience init(engine: any GenerationEngine, options: ServerOptions, log: @escaping @Sendable (String) -> Void = { _ in }) {
        self.init(slot: EngineSlot(ready: engine), options: options, log: log)
    }

    /// The server as a Hummingbird application; `onListening` gets the bound host and port.
    public func makeApplication(onListening: @escaping @Sendable (String, Int) async -> Void = { _, _ in }) -> some ApplicationProtocol {
        var logger = Logger(label: "loft.serve")
        logger.logLevel = .warning
        let host = options.host
        return Application(
            router: makeRouter(),
            server: .http1(configuration: .init(additionalChannelHandlers: [DisconnectWatcher()])),
            configuration: .init(address: .hostname(options.host, port: options.port), serverName: "loft"),
            onServerRunning: { channel in await onListening(host, channel.localAddress?.port ?? 0) },
            logger: logger)
    }

    /// Runs until SIGINT/SIGTERM.
    public func run(onListening: @escaping @Sendable (String, Int) async -> Void = { _, _ in }) async throws {
        try options.validate()
        try await makeApplication(onListening: onListening).runService()
    }

    public func makeRouter() -> Router<ServeRequestContext> {
        let router = Router(context: ServeRequestContext.self)
        router.add(middleware: AccessLogMiddleware(server: self))
        if !options.corsOrigins.isEmpty {
            let origin: CORSMiddleware<ServeRequestContext>.AllowOriginExtended = options.corsOrigins.contains("*") ? .all : .originBased
            router.add(middleware: OriginCheckMiddleware(allowed: options.corsOrigins))
            router.add(middleware: CORSMiddleware(allowOrigin: origin, allowHeaders: [.accept, .authorization, .contentType, .origin],
                                                  allowMethods: [.get, .post, .delete, .options]))
        }
        router.add(middleware: AuthMiddleware(apiKey: options.apiKey, adminKey: options.adminKey))
        router.get("/health") { _, _ in self.health() }
        router.get("/metrics") { _, _ in self.metricsResponse() }
        router.get("/v1/models") { _, _ in try self.listModels() }
        router.get("/v1/models/:model") { _, context in try self.model(context.parameters.require("model")) }
        router.post("/v1/chat/completions") { request, context in try await self.chatCompletions(request, context) }
        router.post("/v1/completions") { request, context in try await self.completions(request, context) }
        router.post("/v1/render") { request, context in try await self.renderRoute(request, context) }
        router.get("/v1/adapters") { _, _ in try self.listAdapters() }
        router.post("/v1/adapters") { request, _ in try await self.loadAdapter(request) }
        router.delete("/v1/adapters/:name") { _, context in try self.unloadAdapter(context.parameters.require("name")) }
        router.post("/v1/load_lora_adapter") { request, _ in try await self.loadAdapter(request) }
        router.post("/v1/unload_lora_adapter") { request, _ in try await self.unloadAdapter(request) }
        return router
    }

    static let routes: Set<String> = [
        "/health", "/metrics", "/v1/models", "/v1/chat/completions", "/v1/completions", "/v1/render", "/v1/adapters",
        "/v1/load_lora_adapter", "/v1/unload_lora_adapter",
    ]

    // MARK: shared steps of the generation routes

    func readBody(_ request: Request) async throws -> RequestFields {
        let limit = options.maxBodyBytes
        if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > limit {
            throw APIError(.contentTooLarge, "the request body has \(length) bytes; this server takes at most \(limit) (--max-body-mb)", code: "request_too_large")
        }
        var request = request
        let buffer: ByteBuffer
        do { buffer = try await request.collectBody(upTo: limit) } catch let e as HTTPError where e.status == .contentTooLarge {
            throw APIError(.contentTooLarge, "the request body is over \(limit) bytes (--max-body-mb)", code: "request_too_large")
        }
        return try RequestFields(body: String(buffer: buffer))
    }

    func render(_ chat: ChatPrompt, model: String?, engine: any GenerationEngine) throws -> RenderedPrompt {
        do { return try engine.render(chat, model: model) } catch let e as EngineError {
            throw APIError.from(e, promptField: "messages")
        } catch {
            throw APIError(.badRequest, "`messages`: the chat template refused them: \(error)", param: "messages", code: "template_error")
        }
    }

    /// Tokens the completion may have: 413 when the prompt alone fills the
    /// context (or passes --max-prompt-tokens), 400 when prompt + max_tokens does.
    func tokenBudget(prompt: Int, requested: Int?, defaultTokens: Int? = nil, engine: any GenerationEngine, field: String) throws -> Int {
        let ctx = engine.contextLength
        let promptLimit = min(options.maxPromptTokens ?? ctx, ctx - 1)
        if prompt > promptLimit {
            throw APIError(.contentTooLarge, "`\(field)`: the prompt has \(prompt) tokens; this server takes at most \(promptLimit) "
                           + "(context \(ctx) tokens, one of them for the answer); shorten it", param: field, code: "context_length_exceeded")
        }
        let room = ctx - prompt
        if let r = requested {
            if r > room {
                throw APIError(.badRequest, "`max_tokens`: the context holds \(ctx) tokens; the prompt has \(prompt), so at most \(room) can follow, "
                               + "but \(r) were asked for; lower max_tokens", param: "max_tokens", code: "context_length_exceeded")
            }
            return r
        }
        return min(defaultTokens ?? room, room)
    }

    /// Submits the requests and ties them to the connection: a client that
    /// goes away cancels them.
    func start(_ requests: [GenerationRequest], engine: any GenerationEngine, context: ServeRequestContext,
               promptField: String) throws -> EngineRun {
        var streams: [AsyncThrowingStream<GenerationEvent, Error>] = []
        do {
            for r in requests { streams.append(try engine.submit(r)) }
        } catch {
            throw APIError.from(error, promptField: promptField)   // streams already submitted end as they are dropped
        }
        let run = EngineRun(streams)
        let metrics = self.metrics
        context.channel?.closeFuture.whenComplete { [weak run] _ in
            if run?.cancelIfRunning() == true { metrics.countDisconnect() }
        }
        return run
    }

    /// Waits for every choice; choices are numbered as OpenAI numbers them: prompt-major, then n.
    func collect(_ run: EngineRun, n: Int, meta: Meta, context: ServeRequestContext) async throws -> Collected {
        var c = Collected()
        var first = true
        do {
            for try await t in run.events {
                switch t.event {
                case .promptLogprobs(let lps):
                    c.promptLogprobs[t.part] = lps
                case .delta(let choice, _, let text, let lps):
                    if first { first = false; observeFirstToken(meta: meta, context: context) }
                    c.choices[t.part * n + choice, default: ChoiceState()].text += text
                    c.choices[t.part * n + choice]!.logprobs += lps
                case .finished(let choice, let reason, let u):
                    c.choices[t.part * n + choice, default: ChoiceState()].finish = reason
                    if let u { c.usage.promptTokens += u.promptTokens; c.usage.completionTokens += u.completionTokens; context.info.add(usage: u) }
                }
            }
        } catch {
            run.markDone()
            throw run.wasCancelled ? CancellationError() : APIError.from(error)
        }
        run.markDone()
        if run.wasCancelled { throw CancellationError() }
        return c
    }

    func observeFirstToken(meta: Meta, context: ServeRequestContext) {
        let s = Date().timeIntervalSince(meta.started)
        context.info.setFirstToken(s)
        metrics.observeFirstToken(model: meta.model, seconds: s)
    }

    func sseResponse(run: EngineRun, context: ServeRequestContext,
                     _ write: @escaping @Sendable (inout any ResponseBodyWriter) async throws -> Void) -> Response {
        let headers: HTTPFields = [.contentType: "text/event-stream; charset=utf-8", .cacheControl: "no-cache"]
        return Response(status: .ok, headers: headers, body: ResponseBody { writer in
            do {
                try await write(&writer)
                run.markDone()
                try await writer.finish(nil)
            } catch {
                // A failed write means the client is gone: free its slot now.
                if run.cancelIfRunning() { self.metrics.countDisconnect() }
                throw error
            }
        })
    }

    func jsonResponse(_ value: JinjaValue, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "application/json"],
                 body: .init(byteBuffer: ByteBuffer(string: value.jsonText() + "\n")))
    }

    static func randomID() -> String {
        String((0..<24).map { _ in "abcdefghijklmnopqrstuvwxyz0123456789".randomElement()! })
    }

    // MARK: the other routes

    func health() -> Response {
        if let failure = slot.failureMessage {
            return jsonResponse(["status": "failed", "message": .string(failure)], status: .serviceUnavailable)
        }
        return slot.isReady ? jsonResponse(["status": "ok"]) : jsonResponse(["status": "loading"], status: .serviceUnavailable)
    }

    func metricsResponse() -> Response {
        let engine = slot.current
        let text = metrics.render(engine: engine?.metrics(), models: engine?.models ?? [], ready: slot.isReady)
        return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                        body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    func modelJSON(_ m: ServedModel, engine: any GenerationEngine) -> JinjaValue {
        [
            "id": .string(m.name), "object": "model", "created": .int(Int(m.loadedAt.timeIntervalSince1970)), "owned_by": "loft",
            "root": m.directory.map(JinjaValue.string) ?? .string(m.name), "parent": m.parent.map(JinjaValue.string) ?? .null,
            "max_model_len": .int(engine.contextLength),
        ]
    }

    func listModels() throws -> Response {
        let engine = try slot.ready()
        let models = Self.baseFirst(engine)
        return jsonResponse(["object": "list", "data": .array(models.map { modelJSON($0, engine: engine) })])
    }

    func model(_ name: String) throws -> Response {
        let engine = try slot.ready()
        guard let m = engine.models.first(where: { $0.name == name }) else { throw APIError.from(EngineError.unknownModel(name), promptField: "model") }
        return jsonResponse(modelJSON(m, engine: engine))
    }

    static func baseFirst(_ engine: any GenerationEngine) -> [ServedModel] {
        var models = engine.models
        if !models.contains(where: { $0.name == engine.baseName }) {
            models.insert(ServedModel(name: engine.baseName, parent: nil, directory: nil, rank: nil), at: 0)
        }
        return models.filter { $0.parent == nil } + models.filter { $0.parent != nil }
    }

    func renderRoute(_ request: Request, _ context: ServeRequestContext) async throws -> Response {
        let f = try await readBody(request)
        let engine = try slot.ready()
        let (model, name) = try CommonParameters.resolveModel(try f.string("model"), engine: engine)
        let rendered: RenderedPrompt
        if f["messages"] != nil {
            let p = try ChatParameters(f, engine: engine, maxChoices: options.maxChoices)
            rendered = try render(p.chat, model: model, engine: engine)
        } else if f["prompt"] != nil {
            let prompts = try CompletionParameters.prompts(f["prompt"])
            guard prompts.count == 1 else { throw APIError.badField("prompt", "render takes one prompt") }
            switch prompts[0] {
            case .text(let s): rendered = RenderedPrompt(text: s, tokens: engine.tokenize(s, addSpecialTokens: true))
            case .tokens(let t): rendered = RenderedPrompt(text: engine.detokenize(t), tokens: t)
            }
        } else {
            throw APIError.badField("messages", "give `messages` (chat) or `prompt` (completions) to render")
        }
        return jsonResponse([
            "object": "render", "model": .string(name), "prompt": .string(rendered.text),
            "token_ids": .array(rendered.tokens.map { .int(Int($0)) }), "prompt_tokens": .int(rendered.tokens.count),
        ])
    }
}
