import Foundation
import LoftFormats
import LoftInference
import LoftModels
import LoftTemplates
import LoftTensors
import LoftTokenizers

/// How big the engine is allowed to get.
public struct EngineConfiguration: Sendable {
    /// Most sequences (choices) decoding at once.
    public var maxBatch = 16
    /// Longest prompt + completion of one request (nil: the model's
    /// max_position_embeddings, at most 4096).
    public var contextLength: Int? = nil
    /// Tokens the KV arena holds over all sequences (nil: maxBatch × context,
    /// at most what a quarter of the machine's memory holds, at least one context).
    public var kvCacheTokens: Int? = nil
    /// KV blocks are this many tokens.
    public var blockSize = 16
    /// Most tokens (decode rows plus prefill chunks) one step runs.
    public var stepTokenBudget = 256
    /// Requests waiting beyond this are refused with `EngineError.queueFull`.
    public var maxQueue = 256
    /// Adapters kept in memory; the least recently used is dropped (and
    /// reloaded from its directory when a request names it again).
    public var maxAdapters = 8
    /// The base's served name (nil: the model file's or directory's name).
    public var baseName: String? = nil
    /// Keep adapters' A and B rounded to IEEE half for decoding (half the
    /// bytes each decode row reads for its adapter, as vLLM serves adapters
    /// in the model's 16-bit dtype). Off by default, so generation and
    /// `loft eval` use the f32 values; `loft serve --adapter-precision f16`
    /// turns it on.
    public var halfPrecisionAdapters = false
    /// On the CPU, an f32 copy of a GGUF base's projections is kept beside
    /// the blocks for prompt rows when all of it fits in this many bytes
    /// (nil: an eighth of the machine's memory; 0: never): prompts then take
    /// one GEMM a projection instead of dequantizing every tile each time,
    /// halving the time to first token on small models.
    public var promptCopyLimitBytes: Int? = nil

    public init(maxBatch: Int = 16, contextLength: Int? = nil, kvCacheTokens: Int? = nil, blockSize: Int = 16,
                stepTokenBudget: Int = 256, maxQueue: Int = 256, maxAdapters: Int = 8, baseName: String? = nil,
                halfPrecisionAdapters: Bool = false) {
        self.maxBatch = maxBatch; self.contextLength = contextLength; self.kvCacheTokens = kvCacheTokens
        self.blockSize = blockSize; self.stepTokenBudget = stepTokenBudget; self.maxQueue = maxQueue
        self.maxAdapters = maxAdapters; self.baseName = baseName; self.halfPrecisionAdapters = halfPrecisionAdapters
    }
}

/// The batched generation engine: continuous batching over one base model
/// with per-row adapters (see docs/engine.md). Requests join and leave the
/// running batch at token boundaries; every step runs decode rows of running
/// sequences and prefill chunks of new ones through `LlamaModel.forwardStep`,
/// on the engine's own scheduler thread.
public final class BatchEngine: GenerationEngine, @unchecked Sendable {
    public let baseName: String
    public let contextLength: Int
    public let configuration: EngineConfiguration
    public let tokenizer: Tokenizer
    /// The base model every row runs on (adapters trained on a compact base
    /// run on a second copy in that format, see `AdapterStore`).
    public let model: LlamaModel
    let modelPath: String?

    /// Guards the queue, the running set, adapters' registry and metrics.
    let state = NSCondition()
    /// Held while a step runs and while an adapter is read into a model.
    let modelLock = NSLock()
    let arena: KVArena
    var pool: KVBlockPool
    var queue: [RequestState] = []
    var running: [RequestState] = []
    var adapters: AdapterStore
    var stats = EngineMetrics()
    var recentRates: [(tokens: Int, seconds: Double)] = []
    var ready = false
    var stopping = false
    /// Tests set this to slow the loop down (seconds after each step), so a
    /// tiny model's request is still running when they look at it.
    var pauseAfterStepForTesting: TimeInterval = 0
    private var thread: Thread?
    let baseTemplate: ChatTemplate?
    let baseStopTokens: Set<Int32>
    private let indexLock = NSLock()
    let hashLock = NSLock()
    var cachedBaseHash: String?
    private var builtIndex: VocabularyIndex?

    /// Loads the model at `path` (an HF directory, a .gguf or a Hub id in the
    /// local cache) and its tokenizer, warms up, and starts the scheduler.
    public convenience init(path: String, configuration: EngineConfiguration = EngineConfiguration(),
                            backend: Backend = CPUBackend.shared) throws {
        let language = try LanguageModel(path: path, backend: backend)
        let name = configuration.baseName ?? URL(fileURLWithPath: language.path).lastPathComponent
        try self.init(model: language.model, tokenizer: language.tokenizer, name: name, modelPath: language.path,
                      configuration: configuration)
    }

    /// An engine over a model already loaded (its adapters must be detached).
    /// `modelPath` lets adapters trained on a compact base load that base, and
    /// lets adapters' recorded base hashes be checked.
    public init(model: LlamaModel, tokenizer: Tokenizer, name: String, modelPath: String? = nil,
                configuration: EngineConfiguration = EngineConfiguration()) throws {
        precondition(model.adapterSlots.isEmpty, "BatchEngine: detach the model's adapters first (rows choose their own)")
        self.model = model
        self.tokenizer = tokenizer
        self.modelPath = modelPath
        self.configuration = configuration
        baseName = name
        let c = model.config
        let context = configuration.contextLength ?? min(c.maxPositionEmbeddings, 4096)
        guard context > 1 else { throw EngineError.invalidRequest(field: "ctx", message: "the context must hold at least 2 tokens") }
        contextLength = context
        let perToken = KVArena.bytesPerToken(c)
        let memoryCap = max(context, Int(ProcessInfo.processInfo.physicalMemory / 4) / perToken)
        let wanted = configuration.kvCacheTokens ?? min(configuration.maxBatch * context, memoryCap)
        let tokens = max(wanted, context)
        let blockSize = max(1, configuration.blockSize)
        let rounded = (tokens + blockSize - 1) / blockSize * blockSize
        pool = KVBlockPool(tokens: rounded, blockSize: blockSize)
        arena = KVArena(config: c, tokens: rounded, backend: model.backend)
        baseTemplate = try tokenizer.chatTemplate.map { try ChatTemplate($0, bosToken: tokenizer.bosToken, eosToken: tokenizer.eosToken) }
        baseStopTokens = Self.stopTokens(config: c, tokenizer: tokenizer)
        adapters = AdapterStore(maxResident: max(1, configuration.maxAdapters))
        if model.backend is CPUBackend {
            model.keepPromptCopies(limitBytes: configuration.promptCopyLimitBytes ?? Int(ProcessInfo.processInfo.physicalMemory / 8))
        }
        warmUp()
        let thread = Thread { self.schedulerLoop() }
        thread.name = "loft-engine"
        thread.stackSize = 8 << 20
        self.thread = thread
        thread.start()
        state.lock(); ready = true; state.unlock()
    }

    /// Stops the scheduler; running and queued requests end with `.cancelled`.
    /// The scheduler thread holds the engine until then.
    public func shutdown() {
        state.lock()
        stopping = true
        state.broadcast()
        state.unlock()
    }

    /// The tokens that end a reply: the EOS ids and the end-of-turn tokens templates use.
    static func stopTokens(config: ModelConfig, tokenizer: Tokenizer) -> Set<Int32> {
        var s = Set(config.eosTokenIDs.map(Int32.init))
        if let e = tokenizer.eosTokenID { s.insert(Int32(e)) }
        for name in ["<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "</s>", "<|endoftext|>"] {
            if let id = tokenizer.tokenToID(name), tokenizer.isSpecial(id) { s.insert(Int32(id)) }
        }
        return s
    }

    /// One tiny step, so the first request does not pay for first-touch costs.
    private func warmUp() {
        guard let span = pool.allocate(tokens: 1) else { return }
        defer { pool.free(span) }
        _ = model.forwardStep([StepSequence(ids: [0], spanStart: pool.startToken(span), cached: 0, adapter: nil, logits: .last)],
                              arena: arena)
    }

    // MARK: GenerationEngine

    public var isReady: Bool { state.lock(); defer { state.unlock() }; return ready && !stopping }

    public var models: [ServedModel] {
        state.lock(); defer { state.unlock() }
        return [ServedModel(name: baseName, parent: nil, directory: modelPath, rank: nil)]
            + adapters.entries.values.sorted { $0.name < $1.name }.map { $0.served(parent: baseName) }
    }

    public func tokenize(_ text: String, addSpecialTokens: Bool) -> [Int32] {
        tokenizer.encode(text, addSpecialTokens: addSpecialTokens).map(Int32.init)
    }

    public func detokenize(_ tokens: [Int32]) -> String {
        tokenizer.decode(tokens.map(Int.init), skipSpecialTokens: false)
    }

    public func render(_ chat: ChatPrompt, model name: String?) throws -> RenderedPrompt {
        let template: ChatTemplate?
        if let name, name != baseName {
            state.lock()
            let entry = adapters.entries[name]
            state.unlock()
            guard let entry else { throw EngineError.unknownModel(name) }
            template = entry.template ?? baseTemplate
        } else {
            template = baseTemplate
        }
        guard let template else {
            throw EngineError.invalidRequest(field: "messages", message: "the model has no chat template; send a plain prompt to /v1/completions")
        }
        let messages: [JinjaValue]
        do {
            guard case .array(let list) = try JSONReader.parse(chat.messagesJSON) else {
                throw EngineError.invalidRequest(field: "messages", message: "must be a list of {\"role\", \"content\"} objects")
            }
            messages = list
        } catch let e as EngineError { throw e } catch {
            throw EngineError.invalidRequest(field: "messages", message: "is not valid JSON: \(error)")
        }
        if messages.isEmpty { throw EngineError.invalidRequest(field: "messages", message: "is empty; send at least one message") }
        for (i, m) in messages.enumerated() where m["role"]?.stringValue == nil {
            throw EngineError.invalidRequest(field: "messages[\(i)].role", message: "is missing or not a string")
        }
        var tools: [JinjaValue]?
        if let toolsJSON = chat.toolsJSON {
            guard case .array(let list)? = try? JSONReader.parse(toolsJSON) else {
                throw EngineError.invalidRequest(field: "tools", message: "must be a JSON list of tool definitions")
            }
            tools = list
        }
        let text: String
        do {
            text = try template.render(messages: messages, tools: tools, addGenerationPrompt: chat.addGenerationPrompt)
        } catch {
            throw EngineError.invalidRequest(field: "messages", message: "the chat template failed on them: \(error)")
        }
        return RenderedPrompt(text: text, tokens: tokenize(text, addSpecialTokens: false))
    }

    public func loadAdapter(name: String, directory: String) throws -> ServedModel {
        try adapterLoad(name: name, directory: directory)
    }

    public func unloadAdapter(name: String) throws {
        state.lock(); defer { state.unlock() }
        guard adapters.entries[name] != nil else { throw EngineError.unknownModel(name) }
        adapters.remove(name)
    }

    public func submit(_ request: GenerationRequest) throws -> AsyncThrowingStream<GenerationEvent, Error> {
        var continuation: AsyncThrowingStream<GenerationEvent, Error>.Continuation!
        let stream = AsyncThrowingStream<GenerationEvent, Error>(bufferingPolicy: .unbounded) { continuation = $0 }
        let cont = continuation!
        let r = try prepare(request, sink: { event in cont.yield(event) }, end: { error in cont.finish(throwing: error) })
        cont.onTermination = { [weak self, weak r] termination in
            if case .cancelled = termination, let r { self?.cancel(r) }
        }
        try enqueue([r], force: false)
        return stream
    }

    public func generate(_ requests: [GenerationRequest]) throws -> [GenerationResult] {
        final class Collector: @unchecked Sendable {
            var choices: [GeneratedChoice]
            var prompt: [TokenLogprob?]?
            var usage: Usage?
            var error: Error?
            init(n: Int) {
                choices = Array(repeating: GeneratedChoice(tokens: [], text: "", logprobs: [], finishReason: .length), count: n)
            }
        }
        let group = DispatchGroup()
        var collectors: [Collector] = []
        var states: [RequestState] = []
        for request in requests {
            let c = Collector(n: max(request.n, 1))
            let r = try prepare(request, sink: { event in
                switch event {
                case .promptLogprobs(let p): c.prompt = p
                case .delta(let i, let tokens, let text, let logprobs):
                    c.choices[i].tokens += tokens; c.choices[i].text += text; c.choices[i].logprobs += logprobs
                case .finished(let i, let reason, let usage):
                    c.choices[i].finishReason = reason
                    if let usage { c.usage = usage }
                }
            }, end: { error in
                c.error = error
                group.leave()
            })
            collectors.append(c)
            states.append(r)
        }
        for _ in states { group.enter() }
        try enqueue(states, force: true)
        group.wait()
        return try zip(requests, collectors).map { request, c in
            if let error = c.error { throw error }
            return GenerationResult(id: request.id, choices: c.choices, promptLogprobs: c.prompt,
                                    usage: c.usage ?? Usage(promptTokens: request.prompt.count, completionTokens: 0))
        }
    }

    public func metrics() -> EngineMetrics {
        state.lock(); defer { state.unlock() }
        var m = stats
        m.currentQueueDepth = queue.count
        m.currentBatchSize = running.reduce(0) { $0 + $1.choices.filter { $0.phase != .done }.count }
        let tokens = recentRates.reduce(0) { $0 + $1.tokens }, seconds = recentRates.reduce(0) { $0 + $1.seconds }
        m.decodeTokensPerSecond = seconds > 0 ? Double(tokens) / seconds : 0
        return m
    }

    /// KV blocks in use (for tests and /metrics).
    public var kvBlocksInUse: Int { state.lock(); defer { state.unlock() }; return pool.usedBlocks }
    public var kvBlockCount: Int { pool.blockCount }

    // MARK: requests

    func validate(_ r: GenerationRequest) throws {
        func bad(_ field: String, _ message: String) -> EngineError { .invalidRequest(field: field, message: message) }
        if r.prompt.isEmpty { throw bad("prompt", "is empty; send at least one token") }
        let vocab = model.config.vocabSize
        if let t = r.prompt.first(where: { $0 < 0 || Int($0) >= vocab }) {
            throw bad("prompt", "token id \(t) is outside the vocabulary (0..<\(vocab))")
        }
        if r.maxTokens < (r.promptLogprobs ? 0 : 1) {
            throw bad("max_tokens", "must be at least 1 (0 only with prompt log-probs, for scoring), got \(r.maxTokens)")
        }
        if r.n < 1 || r.n > configuration.maxBatch { throw bad("n", "must be between 1 and \(configuration.maxBatch), got \(r.n)") }
        if r.topLogprobs < 0 || r.topLogprobs > 20 { throw bad("top_logprobs", "must be between 0 and 20, got \(r.topLogprobs)") }
        let s = r.sampling
        if !(s.temperature >= 0 && s.temperature.isFinite) { throw bad("temperature", "must be a finite number ≥ 0, got \(s.temperature)") }
        if !(s.topP > 0 && s.topP <= 1) { throw bad("top_p", "must be in (0, 1], got \(s.topP)") }
        if !(s.minP >= 0 && s.minP <= 1) { throw bad("min_p", "must be in [0, 1], got \(s.minP)") }
        if s.topK < 0 { throw bad("top_k", "must be ≥ 0 (0 = off), got \(s.topK)") }
        if !(s.repetitionPenalty > 0 && s.repetitionPenalty.isFinite) { throw bad("repetition_penalty", "must be > 0, got \(s.repetitionPenalty)") }
        if !s.frequencyPenalty.isFinite || abs(s.frequencyPenalty) > 2 { throw bad("frequency_penalty", "must be in [-2, 2], got \(s.frequencyPenalty)") }
        if !s.presencePenalty.isFinite || abs(s.presencePenalty) > 2 { throw bad("presence_penalty", "must be in [-2, 2], got \(s.presencePenalty)") }
        if r.prompt.count + r.maxTokens > contextLength {
            throw EngineError.promptTooLong(tokens: r.prompt.count, limit: max(0, contextLength - r.maxTokens))
        }
    }

    func prepare(_ request: GenerationRequest, sink: @escaping (GenerationEvent) -> Void,
                 end: @escaping (Error?) -> Void) throws -> RequestState {
        try validate(request)
        var adapter: AdapterEntry?
        if let name = request.model, name != baseName {
            state.lock()
            adapter = adapters.entries[name]
            state.unlock()
            guard adapter != nil else { throw EngineError.unknownModel(name) }
        }
        let grammar = try JSONConstraintCompiler.compile(request.constraint, vocabulary: vocabularyIndex)
        var stops = request.stopTokens
        if !request.ignoreEOS { stops.formUnion(adapter?.stopTokens ?? baseStopTokens) }
        let r = RequestState(request: request, adapter: adapter, stopTokens: stops, grammar: grammar, sink: sink, end: end)
        let seed = request.sampling.seed ?? UInt64.random(in: 0 ... UInt64.max)
        r.choices = (0 ..< request.n).map { i in
            SequenceState(choice: i, prompt: request.prompt,
                          sampler: TokenSampler(request.sampling, seed: seed &+ UInt64(i), prompt: request.prompt),
                          detokenizer: StreamingDetokenizer(tokenizer: tokenizer, skipSpecialTokens: true),
                          stops: StopStringFilter(request.stopStrings), grammar: grammar?.start())
        }
        return r
    }

    func enqueue(_ requests: [RequestState], force: Bool) throws {
        state.lock(); defer { state.unlock() }
        if stopping { throw EngineError.notReady }
        if !force && queue.count + requests.count > configuration.maxQueue {
            throw EngineError.queueFull(retryAfterSeconds: max(1, queue.count / max(1, configuration.maxBatch)))
        }
        for r in requests {
            let name = r.adapter?.name ?? baseName
            stats.requests[name, default: 0] += 1
            stats.promptTokens[name, default: 0] += r.request.prompt.count
            r.adapter?.pending += 1
        }
        queue += requests
        state.broadcast()
    }

    func cancel(_ r: RequestState) {
        state.lock()
        r.cancelled = true
        state.broadcast()
        state.unlock()
    }

    /// Pre-indexed token bytes for constrained decoding (built on first use).
    var vocabularyIndex: VocabularyIndex {
        indexLock.lock(); defer { indexLock.unlock() }
        if let v = builtIndex { return v }
        let v = VocabularyIndex(size: model.config.vocabSize) { [tokenizer] id in
            tokenizer.isSpecial(id) ? nil : tokenizer.tokenBytes(id)
        }
        builtIndex = v
        return v
    }
}
