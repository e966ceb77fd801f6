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
    /// assistant message without needing `{% generation %}` blocks:
    /// - content: a marker appended to the message's content shows where the
    ///   template puts the content's end;
    /// - start of the completion: the conversation before the message, rendered with
    ///   the generation prompt, is a prefix of the full render (or, when the template
    ///   draws earlier turns differently, its generation-prompt text is found before
    ///   the content);
    /// - end of turn: the text after the content when the conversation stops at this
    ///   message (e.g. `<|im_end|>\n`), as far as the full render repeats it.
    /// Spans never overlap: each search starts where the previous turn ended.
    public func renderWithAssistantSpans(messages: [JinjaValue], tools: [JinjaValue]? = nil,
                                         extra: [String: JinjaValue] = [:]) throws -> RenderedConversation {
        let (full, generation) = try renderTracked(messages: messages, tools: tools, addGenerationPrompt: false, extra: extra)
        let fullScalars = Array(full.unicodeScalars)
        let assistantIndices = messages.indices.filter { messages[$0]["role"]?.stringValue == "assistant" }
        let useGeneration = hasGenerationBlocks && generation.count == assistantIndices.count

        var spans: [AssistantSpan] = []
        var lower = 0
        for (k, i) in assistantIndices.enumerated() {
            let located = contentRange(messages: messages, index: i, tools: tools, extra: extra, full: fullScalars, from: lower)
            var start = completionStart(messages: messages, index: i, tools: tools, extra: extra, full: fullScalars,
                                        from: lower, before: located)
            if let located { start = min(start, located.lowerBound) }
            let content = located ?? start..<start
            let upToTurn = Array(try render(messages: Array(messages[...i]), tools: tools, addGenerationPrompt: false, extra: extra).unicodeScalars)
            let turnEnd = endOfTurn(full: fullScalars, upToTurn: upToTurn, content: content, start: start)
            let completion = useGeneration ? generation[k] : start..<turnEnd
            spans.append(AssistantSpan(messageIndex: i, content: content, turn: content.lowerBound..<turnEnd, completion: completion))
            lower = turnEnd
        }
        return RenderedConversation(text: full, spans: spans)
    }

    /// Private-use character appended to the content to see where the template puts its end.
    private static let contentMarker: Unicode.Scalar = "\u{F8FF}"

    private func contentRange(messages: [JinjaValue], index i: Int, tools: [JinjaValue]?, extra: [String: JinjaValue],
                              full: [Unicode.Scalar], from lower: Int) -> Range<Int>? {
        guard case .object(var message) = messages[i], case .string(let content)? = message["content"] else { return nil }
        let contentScalars = Array(content.unicodeScalars)
        let trimmed = Array(PyString.strip(content, nil, leading: true, trailing: true).unicodeScalars)
        message["content"] = .string(content + String(Character(ChatTemplate.contentMarker)))
        var marked = messages
        marked[i] = .object(message)
        var markerEnd: Int?
        if let text = try? render(messages: marked, tools: tools, addGenerationPrompt: false, extra: extra) {
            let scalars = Array(text.unicodeScalars)
            if let m = scalars.firstIndex(of: ChatTemplate.contentMarker), m >= lower, m <= full.count,
               commonPrefixLength(full, Array(scalars[..<m])) == m {
                markerEnd = m
                for candidate in [contentScalars, trimmed] where m - candidate.count >= lower {
                    if Array(full[(m - candidate.count)..<m]) == candidate { return (m - candidate.count)..<m }
                }
            }
        }
        // The template moved or trimmed the content: look for it after the previous turn.
        for candidate in [contentScalars, trimmed] where !candidate.isEmpty {
            if let p = PyString.find(full, candidate, from: lower) { return p..<(p + candidate.count) }
        }
        // The template rewrote it (e.g. kept only the text after `</think>`): take the
        // longest tail of the content that ends where the marker landed.
        if let m = markerEnd {
            var n = 0
            while n < contentScalars.count, m - n - 1 >= lower, full[m - n - 1] == contentScalars[contentScalars.count - n - 1] { n += 1 }
            return (m - n)..<m
        }
        return nil
    }

    /// Where the model's output for message `i` starts.
    private func completionStart(messages: [JinjaValue], index i: Int, tools: [JinjaValue]?, extra: [String: JinjaValue],
                                 full: [Unicode.Scalar], from lower: Int, before content: Range<Int>?) -> Int {
        let limit = content?.lowerBound ?? full.count
        guard let prompt = try? render(messages: Array(messages[..<i]), tools: tools, addGenerationPrompt: true, extra: extra) else {
            return lower
        }
        let p = Array(prompt.unicodeScalars)
        let shared = commonPrefixLength(full, p)
        if shared == p.count, shared >= lower, shared <= limit { return shared }
        // Earlier turns render differently here; find the generation prompt itself.
        if let bare = try? render(messages: Array(messages[..<i]), tools: tools, addGenerationPrompt: false, extra: extra) {
            let b = Array(bare.unicodeScalars)
            if p.count > b.count, Array(p[..<b.count]) == b {
                let suffix = Array(p[b.count...])
                if limit >= lower, let at = PyString.rfind(Array(full[lower..<limit]), suffix) { return lower + at + suffix.count }
            }
        }
        return min(max(shared, lower), limit)
    }

    /// Where the turn ends: the text that follows the content when the conversation
    /// stops after this message, as far as the full render repeats it. Rendering
    /// the shorter conversation can change how the message itself is drawn (Qwen3
    /// adds a think block to the last turn), so only the text after the content counts.
    private func endOfTurn(full: [Unicode.Scalar], upToTurn: [Unicode.Scalar], content: Range<Int>, start: Int) -> Int {
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
