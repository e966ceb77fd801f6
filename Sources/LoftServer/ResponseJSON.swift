import Foundation
import LoftEngine
import LoftTemplates

/// One position of a legacy completions `logprobs` object (the first prompt
/// token has no log-probability and no alternatives).
struct LogprobEntry {
    var text: String
    var logprob: Float?
    var top: [TopLogprob]?
    init(text: String, logprob: Float?, top: [TopLogprob]?) { self.text = text; self.logprob = logprob; self.top = top }
    init(_ lp: TokenLogprob) { self.init(text: lp.text, logprob: lp.logprob, top: lp.top) }
}

/// OpenAI's response objects, built as ordered JSON.
enum ResponseJSON {
    static func number(_ x: Float) -> JinjaValue {
        guard x.isFinite else { return x < 0 ? .double(-9999) : .double(0) }   // JSON has no -inf; OpenAI's floor is -9999
        return .double(Double("\(x)") ?? Double(x))
    }

    static func usage(_ u: Usage) -> JinjaValue {
        ["prompt_tokens": .int(u.promptTokens), "completion_tokens": .int(u.completionTokens), "total_tokens": .int(u.totalTokens)]
    }

    static func finishReason(_ r: FinishReason) -> String {
        switch r {
        case .stop: return "stop"
        case .length: return "length"
        case .cancelled: return "abort"
        }
    }

    /// Chat's `logprobs.content` entries.
    static func chatLogprobs(_ lps: [TokenLogprob]) -> JinjaValue {
        func bytes(_ s: String) -> JinjaValue { .array(s.utf8.map { .int(Int($0)) }) }
        return ["content": .array(lps.map { lp in
            ["token": .string(lp.text), "logprob": number(lp.logprob), "bytes": bytes(lp.text),
             "top_logprobs": .array(lp.top.map { ["token": .string($0.text), "logprob": number($0.logprob), "bytes": bytes($0.text)] })]
        })]
    }

    /// The legacy completions `logprobs` object: tokens, token_logprobs,
    /// top_logprobs (a {token: logprob} map per position, null where there is
    /// none, as for the first prompt token) and text_offset into the full text.
    static func completionLogprobs(_ entries: [LogprobEntry], startOffset: Int) -> JinjaValue {
        var offsets: [JinjaValue] = [], offset = startOffset
        for e in entries { offsets.append(.int(offset)); offset += e.text.unicodeScalars.count }
        return [
            "tokens": .array(entries.map { .string($0.text) }),
            "token_logprobs": .array(entries.map { $0.logprob.map(number) ?? .null }),
            "top_logprobs": .array(entries.map { e in
                guard let top = e.top else { return .null }
                var o = JinjaObject()
                for t in top where o[t.text] == nil { o[t.text] = number(t.logprob) }
                return .object(o)
            }),
            "text_offset": .array(offsets),
        ]
    }

    static func toolCalls(_ calls: [ToolCall], streaming: Bool) -> JinjaValue {
        .array(calls.enumerated().map { i, c in
            var o = JinjaObject()
            if streaming { o["index"] = .int(i) }
            o["id"] = .string(c.id)
            o["type"] = "function"
            o["function"] = ["name": .string(c.name), "arguments": .string(c.arguments)]
            return .object(o)
        })
    }

    static func sse(_ value: JinjaValue) -> String { "data: " + value.jsonText() + "\n\n" }
    static let done = "data: [DONE]\n\n"
}
