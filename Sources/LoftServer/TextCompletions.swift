import Foundation
import Hummingbird
import LoftEngine
import LoftTemplates

/// POST /v1/completions: text or token-id prompts, one or a batch, with
/// `echo` + `logprobs` scoring the prompt itself (what lm-evaluation-harness's
/// `local-completions` sends for log-likelihoods: `max_tokens: 1, echo: true, logprobs: 1`).
extension OpenAIServer {
    func completions(_ request: Request, _ context: ServeRequestContext) async throws -> Response {
        let f = try await readBody(request)
        let engine = try slot.ready()
        let p = try CompletionParameters(f, engine: engine, maxChoices: options.maxChoices)
        context.info.set(model: p.common.modelName, stream: p.common.stream)
        if p.common.maxTokens == 0 && !p.echo { throw APIError.badField("max_tokens", "must be at least 1 (0 only with `echo`)") }
        let id = "cmpl-" + Self.randomID()
        var generations: [GenerationRequest] = []
        var texts: [String] = []
        var tokenLists: [[Int32]] = []
        for (i, prompt) in p.prompts.enumerated() {
            let field = p.prompts.count == 1 ? "prompt" : "prompt[\(i)]"
            let tokens: [Int32], text: String
            switch prompt {
            case .text(let s):
                guard s.utf8.count <= options.maxBodyBytes else { throw APIError(.contentTooLarge, "`\(field)` is over the size limit", param: field) }
                tokens = engine.tokenize(s, addSpecialTokens: true); text = s
            case .tokens(let t): tokens = t; text = p.echo ? engine.detokenize(t) : ""
            }
            guard !tokens.isEmpty else { throw APIError.badField(field, "is empty after tokenization; give at least one token") }
            // The legacy endpoint's default is 16 tokens; clamp that default (not an explicit ask) to the context.
            let budget = try tokenBudget(prompt: tokens.count, requested: p.common.maxTokens, defaultTokens: 16, engine: engine, field: field)
            generations.append(GenerationRequest(
                id: "\(id)-\(i)", model: p.common.model, prompt: tokens, maxTokens: budget, sampling: p.common.sampling,
                ignoreEOS: p.common.ignoreEOS, stopStrings: p.common.stop, n: p.common.n,
                logprobs: p.logprobs != nil, topLogprobs: p.logprobs ?? 0,
                promptLogprobs: p.echo && p.logprobs != nil, constraint: p.common.constraint))
            texts.append(text)
            tokenLists.append(tokens)
        }
        let run = try start(generations, engine: engine, context: context, promptField: "prompt")
        let promptTexts = texts, promptTokens = tokenLists   // immutable, for the stream
        let meta = Meta(id: id, model: p.common.modelName, created: Int(Date().timeIntervalSince1970), started: context.info.started)
        let echoLogprobs = { (part: Int, prompt: [TokenLogprob?]?) -> [LogprobEntry] in
            promptTokens[part].enumerated().map { i, tok in
                if let lp = prompt?[safe: i] ?? nil { return LogprobEntry(lp) }
                return LogprobEntry(text: engine.detokenize([tok]), logprob: nil, top: nil)
            }
        }
        if p.common.stream {
            return sseResponse(run: run, context: context) { writer in
                try await self.streamCompletions(run: run, p: p, meta: meta, promptTexts: promptTexts,
                                                 echoLogprobs: echoLogprobs, context: context, writer: &writer)
            }
        }
        let collected = try await collect(run, n: p.common.n, meta: meta, context: context)
        var choices: [JinjaValue] = []
        for (part, promptText) in promptTexts.enumerated() {
            for choice in 0..<p.common.n {
                let index = part * p.common.n + choice
                let c = collected.choices[index] ?? ChoiceState()
                var logprobs: JinjaValue = .null
                if p.logprobs != nil {
                    var entries = p.echo ? echoLogprobs(part, collected.promptLogprobs[part]) : []
                    entries += c.logprobs.map(LogprobEntry.init)
                    logprobs = ResponseJSON.completionLogprobs(entries, startOffset: 0)
                }
                choices.append([
                    "index": .int(index), "text": .string((p.echo ? promptText : "") + c.text),
                    "logprobs": logprobs, "finish_reason": .string(ResponseJSON.finishReason(c.finish ?? .stop)),
                ])
            }
        }
        return jsonResponse([
            "id": .string(id), "object": "text_completion", "created": .int(meta.created), "model": .string(meta.model),
            "system_fingerprint": .string(Self.fingerprint), "choices": .array(choices), "usage": ResponseJSON.usage(collected.usage),
        ])
    }

    private func streamCompletions(run: EngineRun, p: CompletionParameters, meta: Meta, promptTexts: [String],
                                   echoLogprobs: @escaping (Int, [TokenLogprob?]?) -> [LogprobEntry],
                                   context: ServeRequestContext, writer: inout any ResponseBodyWriter) async throws {
        let n = p.common.n
        var usage = Usage(promptTokens: 0, completionTokens: 0)
        var echoed = Set<Int>()
        var promptLogprobs: [Int: [TokenLogprob?]] = [:]
        var offsets: [Int: Int] = [:]   // text_offset continues across chunks
        var firstToken = true

        func chunk(_ index: Int, text: String, logprobs: JinjaValue, finish: String?) -> String {
            var o: JinjaObject = [
                "id": .string(meta.id), "object": "text_completion", "created": .int(meta.created), "model": .string(meta.model),
                "system_fingerprint": .string(Self.fingerprint),
            ]
            o["choices"] = [["index": .int(index), "text": .string(text), "logprobs": logprobs,
                             "finish_reason": finish.map(JinjaValue.string) ?? .null]]
            if p.common.includeUsage { o["usage"] = .null }
            return ResponseJSON.sse(.object(o))
        }
        func echoIfNeeded(part: Int, choice: Int) async throws {
            let index = part * n + choice
            guard p.echo, echoed.insert(index).inserted else { return }
            var lp: JinjaValue = .null
            if p.logprobs != nil {
                let entries = echoLogprobs(part, promptLogprobs[part])
                lp = ResponseJSON.completionLogprobs(entries, startOffset: 0)
                offsets[index] = entries.reduce(0) { $0 + $1.text.unicodeScalars.count }
            }
            try await writer.write(ByteBuffer(string: chunk(index, text: promptTexts[part], logprobs: lp, finish: nil)))
        }

        do {
            for try await t in run.events {
                switch t.event {
                case .promptLogprobs(let lps):
                    promptLogprobs[t.part] = lps
                case .delta(let choice, _, let text, let lps):
                    let index = t.part * n + choice
                    if firstToken { firstToken = false; observeFirstToken(meta: meta, context: context) }
                    try await echoIfNeeded(part: t.part, choice: choice)
                    var lp: JinjaValue = .null
                    if p.logprobs != nil {
                        let start = offsets[index] ?? 0
                        lp = ResponseJSON.completionLogprobs(lps.map(LogprobEntry.init), startOffset: start)
                        offsets[index] = start + lps.reduce(0) { $0 + $1.text.unicodeScalars.count }
                    }
                    if text.isEmpty && lps.isEmpty { continue }
                    try await writer.write(ByteBuffer(string: chunk(index, text: text, logprobs: lp, finish: nil)))
                case .finished(let choice, let reason, let u):
                    try await echoIfNeeded(part: t.part, choice: choice)
                    try await writer.write(ByteBuffer(string: chunk(t.part * n + choice, text: "", logprobs: .null,
                                                                    finish: ResponseJSON.finishReason(reason))))
                    if let u {
                        usage.promptTokens += u.promptTokens; usage.completionTokens += u.completionTokens
                        context.info.add(usage: u)
                    }
                }
            }
        } catch let e where !(e is CancellationError) && !run.wasCancelled {
            try await writer.write(ByteBuffer(string: ResponseJSON.sse(APIError.from(e, promptField: "prompt").json)))
        }
        if p.common.includeUsage {
            let final: JinjaValue = [
                "id": .string(meta.id), "object": "text_completion", "created": .int(meta.created), "model": .string(meta.model),
                "system_fingerprint": .string(Self.fingerprint), "choices": [], "usage": ResponseJSON.usage(usage),
            ]
            try await writer.write(ByteBuffer(string: ResponseJSON.sse(final)))
        }
        try await writer.write(ByteBuffer(string: ResponseJSON.done))
    }
}

extension Array {
    subscript(safe i: Int) -> Element? { indices.contains(i) ? self[i] : nil }
}
