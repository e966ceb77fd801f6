import Foundation
import LoftEngine
import LoftTemplates

/// The fields /v1/chat/completions and /v1/completions share, checked.
struct CommonParameters {
    var model: String?            // nil: the base
    var modelName: String         // as the response names it
    var sampling = SamplingParameters(temperature: 1)
    var maxTokens: Int?
    var stop: [String] = []
    var n = 1
    var stream = false
    var includeUsage = false
    var ignoreEOS = false
    var constraint = OutputConstraint.none

    init(_ f: RequestFields, engine: any GenerationEngine, maxChoices: Int) throws {
        let requested = try f.string("model")
        (model, modelName) = try Self.resolveModel(requested, engine: engine)
        sampling.temperature = Float(try f.number("temperature", in: 0...100) ?? 1)
        sampling.topP = Float(try f.number("top_p", in: 0...1) ?? 1)
        if sampling.topP == 0 { throw APIError.badField("top_p", "must be above 0 (1 turns it off)") }
        let k = try f.int("top_k", in: -1...1_000_000) ?? 0
        sampling.topK = max(0, k)
        sampling.minP = Float(try f.number("min_p", in: 0...1) ?? 0)
        sampling.frequencyPenalty = Float(try f.number("frequency_penalty", in: -2...2) ?? 0)
        sampling.presencePenalty = Float(try f.number("presence_penalty", in: -2...2) ?? 0)
        sampling.repetitionPenalty = Float(try f.number("repetition_penalty", in: 0.01...100) ?? 1)
        if let s = try f.int("seed", in: Int.min...Int.max) { sampling.seed = UInt64(bitPattern: Int64(s)) }
        if let v = try f.int("max_completion_tokens", in: 0...10_000_000) { maxTokens = v }
        else if let v = try f.int("max_tokens", in: 0...10_000_000) { maxTokens = v }
        stop = try f.stopStrings()
        n = try f.int("n", in: 1...maxChoices) ?? 1
        stream = try f.bool("stream") ?? false
        if let so = f["stream_options"] {
            guard stream else { throw APIError.badField("stream_options", "is only allowed when `stream` is true") }
            guard case .object(let o) = so else { throw APIError.badField("stream_options", "must be an object") }
            includeUsage = try RequestFields(object: o).bool("include_usage") ?? false
        }
        ignoreEOS = try f.bool("ignore_eos") ?? false
        constraint = try Self.responseFormat(f["response_format"])
        if let lb = f["logit_bias"], lb != .object(JinjaObject()) {
            throw APIError.badField("logit_bias", "is not supported by this server; leave it out")
        }
    }

    static func resolveModel(_ requested: String?, engine: any GenerationEngine) throws -> (String?, String) {
        guard let name = requested, name != engine.baseName else { return (nil, engine.baseName) }
        guard engine.models.contains(where: { $0.name == name }) else {
            throw APIError.from(EngineError.unknownModel(name), promptField: "model")
        }
        return (name, name)
    }

    static func responseFormat(_ value: JinjaValue?) throws -> OutputConstraint {
        guard let value else { return .none }
        guard case .object(let o) = value, case .string(let type)? = o["type"] else {
            throw APIError.badField("response_format", "must be an object with a `type` (text, json_object or json_schema)")
        }
        switch type {
        case "text": return .none
        case "json_object": return .jsonObject
        case "json_schema":
            guard case .object(let js)? = o["json_schema"] else {
                throw APIError.badField("response_format.json_schema", "is required for type json_schema: {\"name\": …, \"schema\": {…}}")
            }
            guard let schema = js["schema"], case .object = schema else {
                throw APIError.badField("response_format.json_schema.schema", "must be a JSON Schema object")
            }
            return .jsonSchema(schema.jsonText())
        default:
            throw APIError.badField("response_format.type", "must be text, json_object or json_schema; got \(type)")
        }
    }
}

/// /v1/chat/completions' own fields.
struct ChatParameters {
    var common: CommonParameters
    var chat: ChatPrompt
    var functionNames: Set<String> = []   // tool calls are parsed back when non-empty
    var namedFunction: String?            // tool_choice naming one function
    var logprobs = false
    var topLogprobs = 0

    init(_ f: RequestFields, engine: any GenerationEngine, maxChoices: Int) throws {
        common = try CommonParameters(f, engine: engine, maxChoices: maxChoices)
        logprobs = try f.bool("logprobs") ?? false
        topLogprobs = try f.int("top_logprobs", in: 0...20) ?? 0
        if f["top_logprobs"] != nil && !logprobs { throw APIError.badField("top_logprobs", "needs `logprobs: true`") }
        let messages = try Self.messages(f["messages"])
        var toolsJSON: String?
        if let tools = f["tools"] {
            guard case .array(let list) = tools else { throw APIError.badField("tools", "must be a list of {\"type\": \"function\", \"function\": {…}}") }
            var names: Set<String> = []
            for (i, t) in list.enumerated() {
                guard case .string("function")? = t["type"], case .object(let fn)? = t["function"],
                      case .string(let name)? = fn["name"], !name.isEmpty else {
                    throw APIError.badField("tools[\(i)]", "must be {\"type\": \"function\", \"function\": {\"name\": …, \"parameters\": {…}}}")
                }
                names.insert(name)
            }
            toolsJSON = list.isEmpty ? nil : tools.jsonText()
            functionNames = names
        }
        switch f["tool_choice"] {
        case nil, .string("auto")?, .string("required")?: break
        case .string("none")?: toolsJSON = nil; functionNames = []
        case .object(let o)?:
            guard case .object(let fn)? = o["function"], case .string(let name)? = fn["name"] else {
                throw APIError.badField("tool_choice", "must be none, auto, required or {\"type\": \"function\", \"function\": {\"name\": …}}")
            }
            guard functionNames.contains(name) else { throw APIError.badField("tool_choice", "names `\(name)`, which is not in `tools`") }
            namedFunction = name
        default:
            throw APIError.badField("tool_choice", "must be none, auto, required or {\"type\": \"function\", \"function\": {\"name\": …}}")
        }
        if f["tool_choice"] != nil && f["tools"] == nil { throw APIError.badField("tool_choice", "needs `tools`") }
        // A named function is forced the way vLLM forces it: the output is that
        // function's arguments, constrained to its parameters' schema.
        if let name = namedFunction, case .array(let list)? = f["tools"],
           let fn = list.first(where: { $0["function"]?["name"] == .string(name) })?["function"] {
            common.constraint = fn["parameters"].map { OutputConstraint.jsonSchema($0.jsonText()) } ?? OutputConstraint.jsonObject
        }
        let addGenerationPrompt = try f.bool("add_generation_prompt") ?? true
        chat = ChatPrompt(messagesJSON: JinjaValue.array(messages).jsonText(), toolsJSON: toolsJSON,
                          addGenerationPrompt: addGenerationPrompt)
    }

    /// Messages as the templates expect them: text parts joined, `developer`
    /// as `system`, tool-call arguments as objects (HF templates `tojson` them).
    static func messages(_ value: JinjaValue?) throws -> [JinjaValue] {
        guard let value else { throw APIError.badField("messages", "is required: a list of {\"role\", \"content\"}") }
        guard case .array(let list) = value, !list.isEmpty else {
            throw APIError.badField("messages", "must be a non-empty list of {\"role\", \"content\"}")
        }
        return try list.enumerated().map { i, m in
            let at = "messages[\(i)]"
            guard case .object(var o) = m else { throw APIError.badField(at, "must be an object with `role` and `content`") }
            guard case .string(let role)? = o["role"] else { throw APIError.badField("\(at).role", "is required") }
            let roles = ["system", "developer", "user", "assistant", "tool"]
            guard roles.contains(role) else { throw APIError.badField("\(at).role", "must be one of \(roles.joined(separator: ", ")); got \(role)") }
            if role == "developer" { o["role"] = "system" }
            switch o["content"] {
            case .string?: break
            case .array(let parts)?:
                let texts = try parts.enumerated().map { j, p -> String in
                    guard case .string(let type)? = p["type"] else { throw APIError.badField("\(at).content[\(j)]", "needs a `type`") }
                    guard type == "text", case .string(let t)? = p["text"] else {
                        throw APIError.badField("\(at).content[\(j)]", "only text parts are supported; got \(type)")
                    }
                    return t
                }
                o["content"] = .string(texts.joined(separator: "\n"))
            case nil, .null?:
                guard role == "assistant", o["tool_calls"] != nil else { throw APIError.badField("\(at).content", "is required") }
            default: throw APIError.badField("\(at).content", "must be a string or a list of text parts")
            }
            if case .array(let calls)? = o["tool_calls"] {
                o["tool_calls"] = .array(calls.map { c in
                    guard case .object(var co) = c, case .object(var fn)? = co["function"],
                          case .string(let args)? = fn["arguments"], let parsed = try? JSONReader.parse(args) else { return c }
                    fn["arguments"] = parsed
                    co["function"] = .object(fn)
                    return .object(co)
                })
            }
            return .object(o)
        }
    }
}

/// /v1/completions' own fields.
struct CompletionParameters {
    var common: CommonParameters
    /// One or more prompts (a batch), as text or token ids.
    var prompts: [Prompt]
    var echo = false
    var logprobs: Int?

    enum Prompt { case text(String), tokens([Int32]) }

    init(_ f: RequestFields, engine: any GenerationEngine, maxChoices: Int) throws {
        common = try CommonParameters(f, engine: engine, maxChoices: maxChoices)
        echo = try f.bool("echo") ?? false
        logprobs = try f.int("logprobs", in: 0...20)
        if let s = try f.string("suffix"), !s.isEmpty { throw APIError.badField("suffix", "is not supported by this server; leave it out") }
        if let b = try f.int("best_of", in: 1...maxChoices), b != common.n {
            throw APIError.badField("best_of", "is not supported (only best_of = n); leave it out")
        }
        prompts = try Self.prompts(f["prompt"])
        if prompts.count * common.n > maxChoices {
            throw APIError.badField("prompt", "\(prompts.count) prompts × n = \(common.n) is over the \(maxChoices) choices one request may have")
        }
    }

    static func prompts(_ value: JinjaValue?) throws -> [Prompt] {
        let usage = "must be a string, a list of strings, a list of token ids or a list of lists of token ids"
        guard let value else { throw APIError.badField("prompt", "is required; it " + usage) }
        func ids(_ list: [JinjaValue], at: String) throws -> [Int32] {
            guard !list.isEmpty else { throw APIError.badField(at, "is empty") }
            return try list.map {
                guard case .int(let t) = $0, t >= 0, t <= Int(Int32.max) else { throw APIError.badField(at, "token ids must be non-negative integers") }
                return Int32(t)
            }
        }
        switch value {
        case .string(let s): return [.text(s)]
        case .array(let items) where !items.isEmpty:
            if case .int = items[0] { return [.tokens(try ids(items, at: "prompt"))] }
            return try items.enumerated().map { i, item in
                switch item {
                case .string(let s): return .text(s)
                case .array(let l): return .tokens(try ids(l, at: "prompt[\(i)]"))
                default: throw APIError.badField("prompt[\(i)]", usage)
                }
            }
        default: throw APIError.badField("prompt", usage)
        }
    }
}
