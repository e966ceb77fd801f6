import Foundation

// The contract between the generation engine and what stands on it
// (`loft serve`, `loft eval`, the UI's chat, `loft generate`/`chat`).
// Everything here is plain data plus one protocol, so a caller can be
// written and tested before (or without) the batched engine behind it.
// Add to it freely; rename or remove only with every caller updated.

/// How the next token is chosen. Greedy when `temperature` is 0.
/// Order of processing (transformers' and vLLM's): repetition penalty,
/// frequency/presence penalties, temperature, top-k, top-p, min-p, sample.
public struct SamplingParameters: Sendable, Equatable, Codable {
    public var temperature: Float = 0
    public var topK: Int = 0            // 0 = off
    public var topP: Float = 1          // 1 = off
    public var minP: Float = 0          // 0 = off
    public var repetitionPenalty: Float = 1
    public var frequencyPenalty: Float = 0
    public var presencePenalty: Float = 0
    /// Same seed, same prompt and parameters → same tokens, batched or alone.
    public var seed: UInt64? = nil

    public init(temperature: Float = 0, topK: Int = 0, topP: Float = 1, minP: Float = 0,
                repetitionPenalty: Float = 1, frequencyPenalty: Float = 0, presencePenalty: Float = 0,
                seed: UInt64? = nil) {
        self.temperature = temperature; self.topK = topK; self.topP = topP; self.minP = minP
        self.repetitionPenalty = repetitionPenalty; self.frequencyPenalty = frequencyPenalty
        self.presencePenalty = presencePenalty; self.seed = seed
    }

    public static let greedy = SamplingParameters()
}

/// Constrained decoding: only tokens that keep the output a prefix of a
/// valid document are allowed.
public enum OutputConstraint: Sendable, Equatable {
    case none
    /// Any JSON object (OpenAI's `response_format: {"type": "json_object"}`).
    case jsonObject
    /// JSON valid under this JSON Schema (its text), compiled to a token-level grammar.
    case jsonSchema(String)
}

/// One generation request, already tokenized (render chat with
/// `GenerationEngine.render`). `model` is nil for the base or an adapter's name.
public struct GenerationRequest: Sendable {
    public var id: String
    public var model: String?
    public var prompt: [Int32]
    public var maxTokens: Int
    public var sampling: SamplingParameters
    /// Extra stop tokens; the model's (or adapter's) EOS and end-of-turn
    /// tokens always stop unless `ignoreEOS`.
    public var stopTokens: Set<Int32>
    public var ignoreEOS: Bool
    /// Stop strings: generation ends when the decoded text contains one; the
    /// text returned ends before it (OpenAI semantics), and no streamed delta
    /// ever contains part of a stop string that later completes.
    public var stopStrings: [String]
    /// Independent choices sharing one prefill (choice i uses seed + i).
    public var n: Int
    /// Log-probability of each chosen token, and the `topLogprobs` best.
    public var logprobs: Bool
    public var topLogprobs: Int
    /// Log-probabilities of the prompt's own tokens (index 0 has none), for
    /// `echo` + `logprobs` in /v1/completions and log-likelihood scoring.
    public var promptLogprobs: Bool
    /// The first prompt position whose log-probability is wanted (those
    /// before it are nil and cost no logits): a scorer that needs only a
    /// continuation's log-probs skips its context's vocabulary products.
    public var promptLogprobsFrom: Int
    public var constraint: OutputConstraint

    public init(id: String = UUID().uuidString, model: String? = nil, prompt: [Int32], maxTokens: Int,
                sampling: SamplingParameters = .greedy, stopTokens: Set<Int32> = [], ignoreEOS: Bool = false,
                stopStrings: [String] = [], n: Int = 1, logprobs: Bool = false, topLogprobs: Int = 0,
                promptLogprobs: Bool = false, promptLogprobsFrom: Int = 0, constraint: OutputConstraint = .none) {
        self.id = id; self.model = model; self.prompt = prompt; self.maxTokens = maxTokens
        self.sampling = sampling; self.stopTokens = stopTokens; self.ignoreEOS = ignoreEOS
        self.stopStrings = stopStrings; self.n = n; self.logprobs = logprobs; self.topLogprobs = topLogprobs
        self.promptLogprobs = promptLogprobs; self.promptLogprobsFrom = promptLogprobsFrom; self.constraint = constraint
    }
}

public struct TokenLogprob: Sendable, Equatable {
    public var token: Int32
    public var text: String
    public var logprob: Float
    /// The best alternatives, most likely first (empty unless asked).
    public var top: [TopLogprob]
    public init(token: Int32, text: String, logprob: Float, top: [TopLogprob] = []) {
        self.token = token; self.text = text; self.logprob = logprob; self.top = top
    }
}

public struct TopLogprob: Sendable, Equatable {
    public var token: Int32
    public var text: String
    public var logprob: Float
    public init(token: Int32, text: String, logprob: Float) { self.token = token; self.text = text; self.logprob = logprob }
}

public enum FinishReason: String, Sendable, Codable {
    case stop        // EOS, a stop token or a stop string
    case length      // max tokens or the context's end
    case cancelled   // the caller cancelled or disconnected
}

public struct Usage: Sendable, Equatable, Codable {
    public var promptTokens: Int
    public var completionTokens: Int
    public var totalTokens: Int { promptTokens + completionTokens }
    public init(promptTokens: Int, completionTokens: Int) {
        self.promptTokens = promptTokens; self.completionTokens = completionTokens
    }
}

/// What a running request reports, in order, per choice.
public enum GenerationEvent: Sendable {
    /// Once, before any token, when `promptLogprobs` was asked (element 0 is nil).
    case promptLogprobs([TokenLogprob?])
    /// New tokens of one choice and the text they add (stop strings withheld
    /// until they are known not to complete).
    case delta(choice: Int, tokens: [Int32], text: String, logprobs: [TokenLogprob])
    /// A choice ended; `usage` counts the whole request once all choices ended
    /// (it is on the last `.finished` event).
    case finished(choice: Int, reason: FinishReason, usage: Usage?)
}

/// A finished choice, for callers that wait for the whole answer.
public struct GeneratedChoice: Sendable {
    public var tokens: [Int32]
    public var text: String
    public var logprobs: [TokenLogprob]
    public var finishReason: FinishReason
    public init(tokens: [Int32], text: String, logprobs: [TokenLogprob], finishReason: FinishReason) {
        self.tokens = tokens; self.text = text; self.logprobs = logprobs; self.finishReason = finishReason
    }
}

public struct GenerationResult: Sendable {
    public var id: String
    public var choices: [GeneratedChoice]
    public var promptLogprobs: [TokenLogprob?]?
    public var usage: Usage
    public init(id: String, choices: [GeneratedChoice], promptLogprobs: [TokenLogprob?]?, usage: Usage) {
        self.id = id; self.choices = choices; self.promptLogprobs = promptLogprobs; self.usage = usage
    }
}

/// A chat conversation to render with the template of the base or of an
/// adapter (each adapter's own saved template and special tokens). Messages
/// and tools are JSON texts as the OpenAI API carries them, so typed content
/// parts, tool calls and tool results reach the template unchanged.
public struct ChatPrompt: Sendable {
    public var messagesJSON: String
    public var toolsJSON: String?
    public var addGenerationPrompt: Bool
    public init(messagesJSON: String, toolsJSON: String? = nil, addGenerationPrompt: Bool = true) {
        self.messagesJSON = messagesJSON; self.toolsJSON = toolsJSON; self.addGenerationPrompt = addGenerationPrompt
    }
}

public struct RenderedPrompt: Sendable {
    public var text: String
    public var tokens: [Int32]
    public init(text: String, tokens: [Int32]) { self.text = text; self.tokens = tokens }
}

/// A model the engine serves: the base, or an adapter with its parent.
public struct ServedModel: Sendable, Equatable {
    public var name: String
    /// nil for the base; the base's name for an adapter.
    public var parent: String?
    public var directory: String?
    public var rank: Int?
    public var loadedAt: Date
    public init(name: String, parent: String?, directory: String?, rank: Int?, loadedAt: Date = Date()) {
        self.name = name; self.parent = parent; self.directory = directory; self.rank = rank; self.loadedAt = loadedAt
    }
}

/// Counters for /metrics and the UI (cumulative since start unless named "current").
public struct EngineMetrics: Sendable {
    public var requests: [String: Int] = [:]            // per model name
    public var promptTokens: [String: Int] = [:]
    public var generatedTokens: [String: Int] = [:]
    public var timeToFirstTokenSeconds: [Double] = []   // recent samples
    public var decodeTokensPerSecond: Double = 0        // recent rate
    public var currentQueueDepth = 0
    public var currentBatchSize = 0
    /// The most distinct adapters (the base counted as one) that shared one step.
    public var maxAdaptersInOneStep = 0
    public var steps = 0
    public init() {}
}

public enum EngineError: Error, Sendable, Equatable, CustomStringConvertible {
    case unknownModel(String)
    case promptTooLong(tokens: Int, limit: Int)
    case queueFull(retryAfterSeconds: Int)
    case invalidRequest(field: String, message: String)
    case adapterRejected(name: String, reason: String)
    case notReady

    public var description: String {
        switch self {
        case .unknownModel(let m): return "the model `\(m)` does not exist; GET /v1/models lists the base and the adapters loaded"
        case .promptTooLong(let n, let limit): return "the prompt has \(n) tokens but the context holds \(limit) with the tokens asked for; shorten it or lower max_tokens"
        case .queueFull(let s): return "the queue is full; retry in \(s) s"
        case .invalidRequest(let field, let message): return "`\(field)`: \(message)"
        case .adapterRejected(let name, let reason): return "adapter `\(name)` was not loaded: \(reason)"
        case .notReady: return "the model is still loading"
        }
    }
}

/// The engine as its callers see it. The batched implementation runs one
/// base model for every request and adds each row's adapter per step; a
/// caller never needs to know how requests were batched.
public protocol GenerationEngine: AnyObject, Sendable {
    /// The base model's served name.
    var baseName: String { get }
    /// Longest prompt + completion one request may have.
    var contextLength: Int { get }
    var models: [ServedModel] { get }
    var isReady: Bool { get }

    func loadAdapter(name: String, directory: String) throws -> ServedModel
    func unloadAdapter(name: String) throws

    /// The exact prompt a chat becomes for `model` (nil: the base).
    func render(_ chat: ChatPrompt, model: String?) throws -> RenderedPrompt
    func tokenize(_ text: String, addSpecialTokens: Bool) -> [Int32]
    func detokenize(_ tokens: [Int32]) -> String

    /// Starts a request; events arrive as it runs in the shared batch.
    /// Terminating the stream (or cancelling its task) cancels the request
    /// within one decode step and frees its cache.
    func submit(_ request: GenerationRequest) throws -> AsyncThrowingStream<GenerationEvent, Error>

    /// Runs requests to the end together (batched as the engine sees fit) and
    /// returns their results in order. Results never depend on the batching.
    func generate(_ requests: [GenerationRequest]) throws -> [GenerationResult]

    func metrics() -> EngineMetrics
}
