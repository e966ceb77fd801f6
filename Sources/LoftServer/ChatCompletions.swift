import Foundation
import Hummingbird
import LoftEngine
import LoftTemplates

/// POST /v1/chat/completions.
extension OpenAIServer {
    func chatCompletions(_ request: Request, _ context: ServeRequestContext) async throws -> Response {
        let f = try await readBody(request)
        let engine = try slot.ready()
        let p = try ChatParameters(f, engine: engine, maxChoices: options.maxChoices)
        context.info.set(model: p.common.modelName, stream: p.common.stream)
        let rendered = try render(p.chat, model: p.common.model, engine: engine)
        let maxTokens = try tokenBudget(prompt: rendered.tokens.count, requested: p.common.maxTokens, engine: engine, field: "messages")
        let id = "chatcmpl-" + Self.randomID()
        let generation = GenerationRequest(
            id: id, model: p.common.model, prompt: rendered.tokens, maxTokens: maxTokens, sampling: p.common.sampling,
            ignoreEOS: p.common.ignoreEOS, stopStrings: p.common.stop, n: p.common.n,
            logprobs: p.logprobs, topLogprobs: p.topLogprobs, constraint: p.common.constraint)
        let run = try start([generation], engine: engine, context: context, promptField: "messages")
        let meta = Meta(id: id, model: p.common.modelName, created: Int(Date().timeIntervalSince1970), started: context.info.started)
        if p.common.stream {
            return sseResponse(run: run, context: context) { writer in
                try await self.streamChat(run: run, p: p, meta: meta, context: context, writer: &writer)
            }
        }
        let collected = try await collect(run, n: p.common.n, meta: meta, context: context)
        var choices: [JinjaValue] = []
        for index in 0..<p.common.n {
            let c = collected.choices[index] ?? ChoiceState()
            var message: JinjaObject = ["role": "assistant"]
            var finish = ResponseJSON.finishReason(c.finish ?? .stop)
            if let name = p.namedFunction {
                message["content"] = .null
                message["tool_calls"] = ResponseJSON.toolCalls([ToolCall(id: ToolCallParser.newCallID(), name: name, arguments: c.text)], streaming: false)
            } else if !p.functionNames.isEmpty, let parsed = ToolCallParser.parse(c.text, functionNames: p.functionNames) {
                message["content"] = parsed.content.map(JinjaValue.string) ?? .null
                message["tool_calls"] = ResponseJSON.toolCalls(parsed.calls, streaming: false)
                finish = "tool_calls"
            } else {
                message["content"] = .string(c.text)
            }
            choices.append([
                "index": .int(index), "message": .object(message),
                "logprobs": p.logprobs ? ResponseJSON.chatLogprobs(c.logprobs) : .null,
                "finish_reason": .string(finish),
            ])
        }
        let body: JinjaValue = [
            "id": .string(id), "object": "chat.completion", "created": .int(meta.created), "model": .string(meta.model),
            "system_fingerprint": .string(Self.fingerprint), "choices": .array(choices), "usage": ResponseJSON.usage(collected.usage),
        ]
        return jsonResponse(body)
    }

    private func streamChat(run: EngineRun, p: ChatParameters, meta: Meta, context: ServeRequestContext,
                            writer: inout any ResponseBodyWriter) async throws {
        let n = p.common.n
        var usage = Usage(promptTokens: 0, completionTokens: 0)
        var roleSent = Set<Int>()
        var filters: [Int: ToolCallStreamFilter] = [:]
        var heldLogprobs: [Int: [TokenLogprob]] = [:]
        var namedCallID: [Int: String] = [:]
        var firstToken = true
        let parseCalls = !p.functionNames.isEmpty && p.namedFunction == nil

        func chunk(_ index: Int, delta: JinjaValue, logprobs: [TokenLogprob]? = nil, finish: String? = nil) -> String {
            var o: JinjaObject = [
                "id": .string(meta.id), "object": "chat.completion.chunk", "created": .int(meta.created),
                "model": .string(meta.model), "system_fingerprint": .string(Self.fingerprint),
            ]
            o["choices"] = [[
                "index": .int(index), "delta": delta,
                "logprobs": p.logprobs && logprobs != nil ? ResponseJSON.chatLogprobs(logprobs!) : .null,
                "finish_reason": finish.map(JinjaValue.string) ?? .null,
            ]]
            if p.common.includeUsage { o["usage"] = .null }
            return ResponseJSON.sse(.object(o))
        }

        do {
            for try await t in run.events {
                switch t.event {
                case .promptLogprobs:
                    continue
                case .delta(let choice, _, let text, let lps):
                    let index = t.part * n + choice
                    if firstToken { firstToken = false; observeFirstToken(meta: meta, context: context) }
                    if roleSent.insert(index).inserted {
                        try await writer.write(ByteBuffer(string: chunk(index, delta: ["role": "assistant", "content": ""])))
                    }
                    if let name = p.namedFunction {
                        var call: JinjaObject = ["index": 0]
                        if namedCallID[index] == nil {
                            let id = ToolCallParser.newCallID()
                            namedCallID[index] = id
                            call["id"] = .string(id); call["type"] = "function"
                            call["function"] = ["name": .string(name), "arguments": .string(text)]
                        } else {
                            call["function"] = ["arguments": .string(text)]
                        }
                        try await writer.write(ByteBuffer(string: chunk(index, delta: ["tool_calls": [.object(call)]], logprobs: lps)))
                        continue
                    }
                    var out = text, outLogprobs = lps
                    if parseCalls {
                        out = filters[index, default: ToolCallStreamFilter(functionNames: p.functionNames)].feed(text)
                        heldLogprobs[index, default: []] += lps
                        if out.isEmpty { continue }
                        outLogprobs = heldLogprobs.removeValue(forKey: index) ?? []
                    }
                    if out.isEmpty && outLogprobs.isEmpty { continue }
                    try await writer.write(ByteBuffer(string: chunk(index, delta: ["content": .string(out)], logprobs: outLogprobs)))
                case .finished(let choice, let reason, let u):
                    let index = t.part * n + choice
                    if roleSent.insert(index).inserted {
                        try await writer.write(ByteBuffer(string: chunk(index, delta: ["role": "assistant", "content": ""])))
                    }
                    var finish = ResponseJSON.finishReason(reason)
                    if parseCalls, var filter = filters[index] {
                        let (rest, calls) = filter.finish()
                        let lps = heldLogprobs.removeValue(forKey: index) ?? []
                        if !rest.isEmpty {
                            try await writer.write(ByteBuffer(string: chunk(index, delta: ["content": .string(rest)], logprobs: lps)))
                        }
                        if !calls.isEmpty {
                            try await writer.write(ByteBuffer(string: chunk(index, delta: ["tool_calls": ResponseJSON.toolCalls(calls, streaming: true)])))
                            finish = "tool_calls"
                        }
                    }
                    try await writer.write(ByteBuffer(string: chunk(index, delta: [:], finish: finish)))
                    if let u {
                        usage.promptTokens += u.promptTokens; usage.completionTokens += u.completionTokens
                        context.info.add(usage: u)
                    }
                }
            }
        } catch let e where !(e is CancellationError) && !run.wasCancelled {
            try await writer.write(ByteBuffer(string: ResponseJSON.sse(APIError.from(e).json)))
        }
        if p.common.includeUsage {
            let final: JinjaValue = [
                "id": .string(meta.id), "object": "chat.completion.chunk", "created": .int(meta.created),
                "model": .string(meta.model), "system_fingerprint": .string(Self.fingerprint),
                "choices": [], "usage": ResponseJSON.usage(usage),
            ]
            try await writer.write(ByteBuffer(string: ResponseJSON.sse(final)))
        }
        try await writer.write(ByteBuffer(string: ResponseJSON.done))
    }
}

extension JinjaObject: ExpressibleByDictionaryLiteral {
    /// Ordered objects from literals, for building responses.
    public init(dictionaryLiteral elements: (String, JinjaValue)...) { self.init(elements) }
}
