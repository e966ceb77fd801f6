import Foundation

/// Where one assistant message sits in a rendered conversation. Offsets count
/// Unicode scalars (Python string indices, as tokenizer offsets use); convert
/// with `RenderedConversation.utf8Range` for byte offsets.
public struct AssistantSpan: Equatable, Sendable {
    public let messageIndex: Int
    /// The message's `content` text as it appears in the render.
    public let content: Range<Int>
    /// From the start of the content through the end-of-turn text after it
    /// (e.g. `<|im_end|>\n`), up to but not including the next message's header.
    public let turn: Range<Int>
    /// Everything the model generates for this turn: from the end of the
    /// generation prompt (so reasoning/tool-call text is included) to the end of turn.
    /// When the template has `{% generation %}` blocks, this is that block's range.
    public let completion: Range<Int>
}

/// A rendered conversation with the position of every assistant message.
public struct RenderedConversation: Sendable {
    public let text: String
    public let spans: [AssistantSpan]

    /// Converts a range of Unicode-scalar offsets into UTF-8 byte offsets of `text`.
    public func utf8Range(_ range: Range<Int>) -> Range<Int> {
        var byte = 0, scalar = 0
        var lower = 0
        for u in text.unicodeScalars {
            if scalar == range.lowerBound { lower = byte }
            if scalar == range.upperBound { return lower..<byte }
            byte += UTF8.width(u)
            scalar += 1
        }
        if scalar == range.lowerBound { lower = byte }
        return lower..<byte
    }
}

extension ChatTemplate {
    /// Renders the whole conversation (no generation prompt) and finds each
    /// assistant message by rendering prefixes of the conversation: the prompt
    /// before message i (`messages[..<i]` with the generation prompt) marks where
    /// the model's output starts; the render of `messages[...i]` marks where the
    /// turn ends; a marker appended to the content marks where the content ends.
    public func renderWithAssistantSpans(messages: [JinjaValue], tools: [JinjaValue]? = nil,
                                         extra: [String: JinjaValue] = [:]) throws -> RenderedConversation {
        let (full, generation) = try renderTracked(messages: messages, tools: tools, addGenerationPrompt: false, extra: extra)
        let fullScalars = Array(full.unicodeScalars)
        let assistantIndices = messages.indices.filter { messages[$0]["role"]?.stringValue == "assistant" }
        let useGeneration = hasGenerationBlocks && generation.count == assistantIndices.count

        var spans: [AssistantSpan] = []
        for (k, i) in assistantIndices.enumerated() {
            let prompt = (try? render(messages: Array(messages[..<i]), tools: tools, addGenerationPrompt: true, extra: extra)) ?? ""
            let start = commonPrefixLength(fullScalars, Array(prompt.unicodeScalars))
            let upToTurn = Array(try render(messages: Array(messages[...i]), tools: tools, addGenerationPrompt: false, extra: extra).unicodeScalars)
            let content = try contentRange(messages: messages, index: i, tools: tools, extra: extra, full: fullScalars, start: start)
            let turnEnd = endOfTurn(full: fullScalars, upToTurn: upToTurn, content: content, message: messages[i], start: start)
            let completion = useGeneration ? generation[k] : start..<turnEnd
            spans.append(AssistantSpan(messageIndex: i, content: content, turn: content.lowerBound..<turnEnd, completion: completion))
        }
        return RenderedConversation(text: full, spans: spans)
    }

    /// Private-use character appended to the content to see where the template puts its end.
    private static let contentMarker: Unicode.Scalar = "\u{F8FF}"

    /// The content's range in the full render, found by appending a marker to it and
    /// seeing where the marker lands; falls back to searching for the text.
    private func contentRange(messages: [JinjaValue], index i: Int, tools: [JinjaValue]?, extra: [String: JinjaValue],
                              full: [Unicode.Scalar], start: Int) throws -> Range<Int> {
        guard case .object(var message) = messages[i], case .string(let content)? = message["content"], !content.isEmpty else {
            return start..<start
        }
        let contentScalars = Array(content.unicodeScalars)
        let trimmed = Array(PyString.strip(content, nil, leading: true, trailing: true).unicodeScalars)
        message["content"] = .string(content + String(Character(ChatTemplate.contentMarker)))
        var marked = messages
        marked[i] = .object(message)
        if let text = try? render(messages: marked, tools: tools, addGenerationPrompt: false, extra: extra) {
            let scalars = Array(text.unicodeScalars)
            if let m = scalars.firstIndex(of: ChatTemplate.contentMarker), m >= start,
               commonPrefixLength(full, Array(scalars[..<m])) == m {
                for candidate in [contentScalars, trimmed] where m - candidate.count >= start {
                    if Array(full[(m - candidate.count)..<m]) == candidate { return (m - candidate.count)..<m }
                }
            }
        }
        // Fall back to the first occurrence of the (possibly trimmed) content after the prompt.
        for candidate in [contentScalars, trimmed] where !candidate.isEmpty {
            if let p = PyString.find(full, candidate, from: start) { return p..<(p + candidate.count) }
        }
        return start..<start
    }

    /// Where the turn ends: the text that follows the content when the conversation
    /// stops after this message (e.g. `<|im_end|>\n`), as far as the full render
    /// repeats it. Rendering the shorter conversation can change how this message
    /// itself is drawn (Qwen3 adds a think block to the last turn), so only the
    /// text after the content is compared.
    private func endOfTurn(full: [Unicode.Scalar], upToTurn: [Unicode.Scalar], content: Range<Int>,
                           message: JinjaValue, start: Int) -> Int {
        let contentText = Array(full[content])
        if !contentText.isEmpty, let p = PyString.rfind(upToTurn, contentText) {
            let tail = upToTurn[(p + contentText.count)...]
            var n = 0
            while content.upperBound + n < full.count, n < tail.count,
                  full[content.upperBound + n] == tail[tail.startIndex + n] { n += 1 }
            return content.upperBound + n
        }
        // No content to anchor on (e.g. a tool-call turn): the shared prefix of both renders.
        return max(start, content.upperBound, commonPrefixLength(full, upToTurn))
    }

    private func commonPrefixLength(_ a: [Unicode.Scalar], _ b: [Unicode.Scalar]) -> Int {
        var n = 0
        while n < a.count && n < b.count && a[n] == b[n] { n += 1 }
        return n
    }
}
