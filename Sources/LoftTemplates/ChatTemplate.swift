import Foundation

/// A parsed chat template, rendered the way transformers'
/// `tokenizer.apply_chat_template(..., tokenize=False)` renders it.
///
/// Rendering does not change the template, so one instance can render from
/// several threads at once; set `bosToken`, `eosToken` and `now` before sharing it.
public final class ChatTemplate: @unchecked Sendable {
    public let source: String
    /// Passed to the template as `bos_token` / `eos_token` when set.
    public var bosToken: String?
    public var eosToken: String?
    /// The clock behind `strftime_now`; tests pin it for deterministic output.
    public var now: () -> Date = { Date() }
    private let body: [Statement]

    /// Parses `source`; throws `TemplateError.syntax` naming the line and column.
    public init(_ source: String, bosToken: String? = nil, eosToken: String? = nil) throws {
        self.source = source
        self.bosToken = bosToken
        self.eosToken = eosToken
        body = try Parser.parse(source)
    }

    /// Whether the template marks assistant output with `{% generation %}` blocks.
    public var hasGenerationBlocks: Bool {
        source.range(of: #"\{%-?\s*generation\s*-?%\}"#, options: .regularExpression) != nil
    }

    /// Renders a conversation. `tools` and `documents` are passed as `none` when nil,
    /// as transformers does; `extra` adds template variables (e.g. `enable_thinking`).
    public func render(messages: [JinjaValue], tools: [JinjaValue]? = nil, documents: [JinjaValue]? = nil,
                       addGenerationPrompt: Bool = false, extra: [String: JinjaValue] = [:]) throws -> String {
        try renderTracked(messages: messages, tools: tools, documents: documents,
                          addGenerationPrompt: addGenerationPrompt, extra: extra).text
    }

    /// Renders a conversation whose last message is to be continued (a prefill):
    /// the render stops right after that message's content, without its
    /// end-of-turn text, as transformers' `continue_final_message=True` does.
    public func renderContinuingFinalMessage(messages: [JinjaValue], tools: [JinjaValue]? = nil,
                                             documents: [JinjaValue]? = nil, extra: [String: JinjaValue] = [:]) throws -> String {
        let tag = "CONTINUE_FINAL_MESSAGE_TAG "
        guard case .object(var last)? = messages.last else {
            throw TemplateError.invalidSource(message: "continue_final_message is set but the conversation is empty!")
        }
        let finalText: String
        switch last["content"] {
        case .string(let s)?:
            finalText = s
            last["content"] = .string(s + tag)
        case .array(var blocks)?:
            guard let k = blocks.lastIndex(where: { $0["text"] != nil }), case .object(var block) = blocks[k],
                  case .string(let s)? = block["text"] else {
                throw TemplateError.invalidSource(message: "continue_final_message is set but we could not find any text to continue in the final message!")
            }
            finalText = s
            block["text"] = .string(s + tag)
            blocks[k] = .object(block)
            last["content"] = .array(blocks)
        default:
            throw TemplateError.invalidSource(message: "continue_final_message is set but the final message has no \"content\" to continue!")
        }
        var tagged = messages
        tagged[tagged.count - 1] = .object(last)
        let rendered = try render(messages: tagged, tools: tools, documents: documents, addGenerationPrompt: false, extra: extra)
        let text = Array(rendered.unicodeScalars)
        let strippedTag = Array(PyString.strip(tag, nil, leading: true, trailing: true).unicodeScalars)
        let strippedFinal = PyString.strip(finalText, nil, leading: true, trailing: true)
        guard PyString.find(rendered, strippedFinal) != nil, let at = PyString.rfind(text, strippedTag) else {
            throw TemplateError.invalidSource(message: "continue_final_message is set but the final message does not appear in the chat "
                + "after applying the chat template! The template deletes portions of the final message.")
        }
        let fullTag = Array(tag.unicodeScalars)
        if at + fullTag.count <= text.count, Array(text[at..<(at + fullTag.count)]) == fullTag {
            return PyString.make(text[..<at])
        }
        // The template trimmed the trailing space after the tag: cut more cautiously.
        return PyString.strip(PyString.make(text[..<at]), nil, leading: false, trailing: true)
    }

    /// Renders and also returns the ranges (in Unicode scalars, as Python's str
    /// indexes) of the output written by top-level `{% generation %}` blocks.
    public func renderTracked(messages: [JinjaValue], tools: [JinjaValue]? = nil, documents: [JinjaValue]? = nil,
                              addGenerationPrompt: Bool = false, extra: [String: JinjaValue] = [:]) throws
        -> (text: String, generationRanges: [Range<Int>]) {
        let globals = Frame(parent: nil)
        Globals.install(into: globals, clock: now)
        if let bosToken { globals.variables["bos_token"] = .string(bosToken) }
        if let eosToken { globals.variables["eos_token"] = .string(eosToken) }
        for (k, v) in extra { globals.variables[k] = Value(v) }
        globals.variables["messages"] = .list(ChatTemplate.aliasReasoningFields(messages).map(Value.init))
        globals.variables["tools"] = tools.map { .list($0.map(Value.init)) } ?? Value.none
        globals.variables["documents"] = documents.map { .list($0.map(Value.init)) } ?? Value.none
        globals.variables["add_generation_prompt"] = .bool(addGenerationPrompt)
        let interpreter = Interpreter(clock: now)
        let text = try interpreter.render(body, globals: globals)
        return (text, interpreter.generationRanges)
    }

    /// Renders with exactly the given variables (plus the globals), the way
    /// jinja2's `template.render(**context)` does; used by the interpreter tests.
    func render(context: [String: JinjaValue]) throws -> (text: String, generationRanges: [Range<Int>]) {
        let globals = Frame(parent: nil)
        Globals.install(into: globals, clock: now)
        for (k, v) in context { globals.variables[k] = Value(v) }
        let interpreter = Interpreter(clock: now)
        let text = try interpreter.render(body, globals: globals)
        return (text, interpreter.generationRanges)
    }

    /// transformers copies a message's reasoning (`reasoning_content`, `thinking`
    /// or `reasoning`) into both `thinking` (first key) and `reasoning_content` (last key).
    static func aliasReasoningFields(_ messages: [JinjaValue]) -> [JinjaValue] {
        messages.map { message in
            guard case .object(let o) = message else { return message }
            let fields = ["reasoning_content", "thinking", "reasoning"]
            guard let reasoning = fields.lazy.compactMap({ o[$0] }).first(where: { $0 != .null }) else { return message }
            var aliased = JinjaObject()
            aliased["thinking"] = reasoning
            for (k, v) in o.pairs { aliased[k] = v }
            aliased["thinking"] = o["thinking"] ?? reasoning
            aliased["reasoning_content"] = reasoning
            return .object(aliased)
        }
    }
}
