import ArgumentParser
import Foundation
import LoftEngine
import LoftServer

struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve a base model and its adapters over an OpenAI-compatible HTTP API.",
        discussion: """
        Every request names the base or an adapter as `model`; rows of different adapters share each decode step.
        Listens on 127.0.0.1 unless --host says otherwise; a host reachable from other machines needs --api-key-file
        (or --api-key), or --insecure-no-auth. See docs/serving.md.
        """)

    @Argument(help: "The base model: a Hugging Face model directory, a .gguf file, or a Hub id (org/name).")
    var model: String

    @Option(name: .customLong("adapter"), help: ArgumentHelp("An adapter to serve from the start, as NAME=DIR (repeatable).", valueName: "NAME=DIR"))
    var adapters: [String] = []

    @Option(name: .customLong("adapter-dir"), help: "The directory adapters may be loaded from at run time (POST /v1/adapters); without it, runtime loads are off.")
    var adapterDir: String?

    @Option(help: "The address to listen on.")
    var host = "127.0.0.1"

    @Option(help: "The port to listen on (0: any free port).")
    var port = 8000

    @Option(name: .customLong("api-key"), help: "The key clients send as `Authorization: Bearer KEY` (also read from LOFT_API_KEY). Prefer --api-key-file: a key on the command line shows in `ps`.")
    var apiKey: String?

    @Option(name: .customLong("api-key-file"), help: "A file whose first line is the API key.")
    var apiKeyFile: String?

    @Option(name: .customLong("admin-key"), help: "A second key, needed for adapter administration (/v1/adapters, /v1/load_lora_adapter, /v1/unload_lora_adapter).")
    var adminKey: String?

    @Flag(name: .customLong("insecure-no-auth"), help: "Serve a non-loopback --host without any key.")
    var insecureNoAuth = false

    @Option(name: .customLong("max-batch"), help: "The most requests decoded together in one step.")
    var maxBatch = 16

    @Option(name: .customLong("max-adapters"), help: "The most adapters kept in memory (least recently used ones are evicted and reloaded on demand).")
    var maxAdapters = 8

    @Option(name: .customLong("adapter-precision"), help: "How adapters' LoRA weights are kept for decoding: f16 (default: rounded to half, half the bytes a decode step reads for each adapter, as vLLM serves adapters in 16 bits; logits within a few thousandths of the adapter's own effect) or f32 (the trained values exactly).")
    var adapterPrecision = AdapterPrecision.f16

    @Option(help: "The context length per request, prompt plus completion (default: the model's, up to 4096).")
    var ctx: Int?

    @Option(name: .customLong("cors-origin"), help: "An origin allowed to call the API from a browser (repeatable; * for any). CORS is off without it.")
    var corsOrigins: [String] = []

    @Option(name: .customLong("max-body-mb"), help: "The largest request body accepted, in MiB.")
    var maxBodyMB = 8

    func validate() throws {
        if maxBatch < 1 { throw ValidationError("--max-batch must be at least 1") }
        if maxAdapters < 1 { throw ValidationError("--max-adapters must be at least 1") }
        if let c = ctx, c < 16 { throw ValidationError("--ctx must be at least 16 tokens") }
        if maxBodyMB < 1 { throw ValidationError("--max-body-mb must be at least 1") }
        if apiKey != nil && apiKeyFile != nil { throw ValidationError("give --api-key or --api-key-file, not both") }
        for a in adapters where parseAdapter(a) == nil {
            throw ValidationError("--adapter \(a): write NAME=DIR, e.g. --adapter identity=outputs/quickstart")
        }
    }

    func parseAdapter(_ spec: String) -> (name: String, directory: String)? {
        guard let eq = spec.firstIndex(of: "=") else { return nil }
        let name = String(spec[..<eq]), dir = String(spec[spec.index(after: eq)...])
        return name.isEmpty || dir.isEmpty ? nil : (name, dir)
    }

    func serverOptions() throws -> ServerOptions {
        var o = ServerOptions()
        o.host = host
        o.port = port
        if let file = apiKeyFile {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw CLIError("--api-key-file \(file): cannot read it; give a file whose first line is the key")
            }
            o.apiKey = text.split(whereSeparator: \.isNewline).first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
            if o.apiKey?.isEmpty ?? true { throw CLIError("--api-key-file \(file): the first line is empty; write the key there") }
        } else {
            o.apiKey = apiKey ?? ProcessInfo.processInfo.environment["LOFT_API_KEY"].flatMap { $0.isEmpty ? nil : $0 }
        }
        o.adminKey = adminKey
        o.insecureNoAuth = insecureNoAuth
        o.adapterDirectory = adapterDir
        o.corsOrigins = corsOrigins
        o.maxBodyBytes = maxBodyMB << 20
        try o.validate()
        return o
    }

    func run() throws {
        let options = try serverOptions()
        let slot = EngineSlot()
        let server = OpenAIServer(slot: slot, options: options, log: { writeErr($0) })
        let listening = DispatchSemaphore(value: 0), stopped = DispatchSemaphore(value: 0)
        let failure = ErrorBox()
        // The server runs on Swift's concurrency threads while this (sync)
        // command loads the model, then waits for SIGINT/SIGTERM to end it.
        Task.detached {
            do {
                try await server.run { host, port in
                    let shown = host.contains(":") ? "[\(host)]" : host
                    print("Loft is serving the OpenAI API at http://\(shown):\(port)/v1"
                          + (options.apiKey == nil ? "" : " (send Authorization: Bearer KEY)"))
                    fflush(stdout)
                    listening.signal()
                }
            } catch {
                failure.set(error)
                listening.signal()
            }
            stopped.signal()
        }
        listening.wait()
        if let e = failure.value { throw CLIError("cannot listen on \(host):\(port): \(e)") }

        do {
            writeErr("loading \(model)…")
            let engine = try makeEngine()
            slot.install(engine)
            for spec in adapters {
                let (name, dir) = parseAdapter(spec)!
                do { _ = try engine.loadAdapter(name: name, directory: dir) } catch {
                    throw CLIError("--adapter \(spec): \(error)")
                }
            }
            try warmUp(engine)
            slot.markReady()
            print("models:")
            for m in engine.models {
                print("  \(m.name)" + (m.parent.map { " (adapter on \($0)" + (m.directory.map { ", \($0)" } ?? "") + ")" } ?? " (base)"))
            }
            print("ready; one line per request follows on stderr. Ctrl-C stops.")
            fflush(stdout)
        } catch {
            slot.markFailed("\(error)")
            throw error
        }
        stopped.wait()
        if let e = failure.value { throw e }
    }

    /// One short greedy request through the whole path, so /health turns
    /// ready only once the first real request will not pay for first-use work.
    func warmUp(_ engine: any GenerationEngine) throws {
        let prompt = engine.tokenize("Hello", addSpecialTokens: true)
        guard !prompt.isEmpty else { return }
        _ = try engine.generate([GenerationRequest(prompt: prompt, maxTokens: 1)])
    }

    func makeEngine() throws -> any GenerationEngine {
        let configuration = EngineConfiguration(maxBatch: maxBatch, contextLength: ctx, maxAdapters: maxAdapters,
                                                halfPrecisionAdapters: adapterPrecision.isHalf)
        return try BatchEngine(path: try localModel(model), configuration: configuration)
    }
}

final class ErrorBox: @unchecked Sendable {
    private let lock = NSLock()
    private var error: Error?
    func set(_ e: Error) { lock.withLock { error = e } }
    var value: Error? { lock.withLock { error } }
}
