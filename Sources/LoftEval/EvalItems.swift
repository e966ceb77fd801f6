import Foundation
import LoftData
import LoftTemplates

/// One held-out item, in the form every model is asked the same way.
public struct EvalItem: Sendable {
    public enum Kind: String, Sendable {
        /// The model answers; the answer is compared with the references.
        case generation
        /// lm-eval's multiple_choice: the log-likelihood of each choice after the context.
        case multipleChoice = "multiple_choice"
        /// lm-eval's loglikelihood: the log-likelihood of the target after the context.
        case loglikelihood
        /// A preference pair, scored by implicit reward against the base.
        case preference
    }
    public enum Prompt: Sendable {
        /// Rendered with the model's (or adapter's) chat template, ready for the reply.
        case chat([JinjaValue])
        /// Plain text (prompt/completion rows, lm-eval tasks): tokenized as is.
        case text(String)
    }
    public var id: Int
    public var kind: Kind
    public var prompt: Prompt
    public var references: [String] = []
    /// Multiple choice: the choices (without the delimiter) and the gold index.
    public var choices: [String] = []
    /// lm-eval's `target_delimiter`: put between the context and each choice or target.
    public var targetDelimiter = " "
    public var gold: Int? = nil
    /// Preference rows.
    public var chosen: String? = nil
    public var rejected: String? = nil
    /// Stop strings for generation (lm-eval's `until`).
    public var until: [String] = []
    /// The row as read, for samples.jsonl.
    public var doc: JinjaValue = .null

    public init(id: Int, kind: Kind, prompt: Prompt) { self.id = id; self.kind = kind; self.prompt = prompt }

    /// The prompt as one line of text, for reports.
    public var promptText: String {
        switch prompt {
        case .text(let t): return t
        case .chat(let messages):
            return messages.compactMap { m -> String? in
                guard let role = m["role"]?.stringValue, let content = m["content"]?.stringValue else { return nil }
                return "\(role): \(content)"
            }.joined(separator: "\n")
        }
    }
}

/// Reads evaluation items from a data file in one of the training formats
/// (messages, sharegpt, alpaca, prompt/completion), multiple-choice rows
/// (`question` or `context`, `choices`, `answer` as an index) or preference
/// rows (`prompt`, `chosen`, `rejected`).
public enum EvalData {
    static let roles = ["human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "model": "assistant",
                        "bot": "assistant", "system": "system", "tool": "tool", "developer": "system"]

    public static func load(_ path: String, limit: Int? = nil, rows: Range<Int>? = nil) throws -> [EvalItem] {
        guard FileManager.default.fileExists(atPath: path) else {
            throw EvalError.badData(file: path, row: nil, field: nil, message: "does not exist; give a JSONL or JSON file of held-out rows (--data) or an lm-eval task YAML (--task)")
        }
        let reader = try RowReader(path: path)
        reader.rows = rows
        var items: [EvalItem] = []
        var row = rows?.lowerBound ?? 0
        while let next = try reader.next() {
            defer { row += 1 }
            let raw: RawRow
            switch next {
            case .success(let r): raw = r
            case .failure(let e): throw EvalError.badData(file: path, row: row, field: nil, message: "\(e)")
            }
            guard case .object(let o) = raw.value else {
                throw EvalError.badData(file: path, row: row, field: nil, message: "is not a JSON object; each row must be an object such as {\"messages\": [...]}")
            }
            items.append(try item(o, id: items.count, file: path, row: row, doc: raw.value))
            if let limit, items.count >= limit { break }
        }
        if items.isEmpty {
            throw EvalError.badData(file: path, row: nil, field: nil, message: "holds no rows")
        }
        return items
    }

    static func item(_ o: JinjaObject, id: Int, file: String, row: Int, doc: JinjaValue) throws -> EvalItem {
        func fail(_ field: String?, _ message: String) -> EvalError { .badData(file: file, row: row, field: field, message: message) }
        func string(_ key: String) throws -> String? {
            guard let v = o[key], v != .null else { return nil }
            guard let s = v.stringValue else { throw fail(key, "expected a string") }
            return s
        }
        // Extra references: `references: [..]` or `reference`.
        var extra: [String] = []
        if let r = o["references"] {
            guard let list = r.arrayValue?.compactMap(\.stringValue), list.count == r.arrayValue?.count else {
                throw fail("references", "expected a list of strings")
            }
            extra = list
        } else if let r = try string("reference") { extra = [r] }

        var item: EvalItem
        if o["chosen"] != nil || o["rejected"] != nil {
            // The prompt as TRL writes it (`prompt`), or as LLaMA-Factory's
            // sharegpt pairs do (`conversations`, dpo_en_demo.json) or messages.
            let promptKey = ["prompt", "conversations", "messages"].first { o[$0] != nil }
            guard let promptKey, let chosen = o["chosen"], let rejected = o["rejected"] else {
                throw fail(promptKey == nil ? "prompt" : (o["chosen"] == nil ? "chosen" : "rejected"),
                           "a preference row needs prompt (or conversations), chosen and rejected")
            }
            var prompt = try messages(o[promptKey]!, file: file, row: row, field: promptKey, asUser: promptKey == "prompt")
            if let system = try string("system"), !system.isEmpty { prompt.insert(["role": "system", "content": .string(system)], at: 0) }
            item = EvalItem(id: id, kind: .preference, prompt: .chat(prompt))
            item.chosen = try completionText(chosen, fail: { fail("chosen", $0) })
            item.rejected = try completionText(rejected, fail: { fail("rejected", $0) })
        } else if let choices = o["choices"] {
            guard let list = choices.arrayValue, !list.isEmpty else { throw fail("choices", "expected a non-empty list of strings") }
            let texts = list.map { v -> String in v.stringValue ?? v.jsonText() }
            let context = try string("question") ?? string("context")
            guard let context else { throw fail("question", "a multiple-choice row needs `question` (or `context`) with `choices` and `answer`") }
            guard let answer = o["answer"], case .int(let gold) = answer, texts.indices.contains(gold) else {
                throw fail("answer", "expected the index (0 to \(texts.count - 1)) of the right choice")
            }
            item = EvalItem(id: id, kind: .multipleChoice, prompt: .text(context))
            item.choices = texts
            item.gold = gold
            item.references = [texts[gold]]
        } else if o["messages"] != nil || o["conversations"] != nil {
            let key = o["messages"] != nil ? "messages" : "conversations"
            var msgs = try messages(o[key]!, file: file, row: row, field: key, asUser: false)
            if let system = try string("system"), !system.isEmpty { msgs.insert(["role": "system", "content": .string(system)], at: 0) }
            guard let last = msgs.lastIndex(where: { $0["role"]?.stringValue == "assistant" }) else {
                throw fail(key, "has no assistant turn to use as the reference; end the conversation with the expected answer")
            }
            let reference = msgs[last]["content"]?.stringValue ?? ""
            item = EvalItem(id: id, kind: .generation, prompt: .chat(Array(msgs[..<last])))
            item.references = [reference]
        } else if let instruction = try string("instruction") {
            guard let output = try string("output") else { throw fail("output", "an alpaca row needs `output` (the reference answer)") }
            let input = try string("input") ?? ""
            var msgs: [JinjaValue] = []
            if let system = try string("system"), !system.isEmpty { msgs.append(["role": "system", "content": .string(system)]) }
            // As training renders alpaca rows (LoftData): instruction, newline, input.
            msgs.append(["role": "user", "content": .string(input.isEmpty ? instruction : instruction + "\n" + input)])
            item = EvalItem(id: id, kind: .generation, prompt: .chat(msgs))
            item.references = [output]
        } else if let prompt = o["prompt"] {
            guard let completion = o["completion"] else { throw fail("completion", "a prompt/completion row needs `completion` (the reference)") }
            if case .array = prompt {
                item = EvalItem(id: id, kind: .generation, prompt: .chat(try messages(prompt, file: file, row: row, field: "prompt", asUser: true)))
            } else {
                guard let p = prompt.stringValue else { throw fail("prompt", "expected a string or a list of messages") }
                item = EvalItem(id: id, kind: .generation, prompt: .text(p))
            }
            item.references = [try completionText(completion, fail: { fail("completion", $0) })]
        } else {
            throw fail(nil, "cannot tell the format from the keys \(o.keys.map { "`\($0)`" }.joined(separator: ", ")); use messages, conversations, instruction/output, prompt/completion, question/choices/answer or prompt/chosen/rejected")
        }
        if item.kind == .generation { item.references += extra }
        item.doc = doc
        return item
    }

    /// A message list (role/content or from/value), or a plain string as one user turn.
    static func messages(_ v: JinjaValue, file: String, row: Int, field: String, asUser: Bool) throws -> [JinjaValue] {
        if asUser, let s = v.stringValue { return [["role": "user", "content": .string(s)]] }
        guard let list = v.arrayValue, !list.isEmpty else {
            throw EvalError.badData(file: file, row: row, field: field, message: "expected a non-empty list of messages")
        }
        return try list.enumerated().map { i, m in
            let role = m["role"]?.stringValue ?? m["from"]?.stringValue
            let content = m["content"] ?? m["value"]
            guard let role, let content else {
                throw EvalError.badData(file: file, row: row, field: "\(field)[\(i)]", message: "expected {\"role\", \"content\"} or {\"from\", \"value\"}")
            }
            guard let mapped = roles[role.lowercased()] else {
                throw EvalError.badData(file: file, row: row, field: "\(field)[\(i)]", message: "unknown role `\(role)`; use system, user or assistant")
            }
            return ["role": .string(mapped), "content": content]
        }
    }

    /// A completion given as a string or as messages (the last one's content).
    static func completionText(_ v: JinjaValue, fail: (String) -> EvalError) throws -> String {
        if let s = v.stringValue { return s }
        if let list = v.arrayValue, let last = list.last, let s = last["content"]?.stringValue ?? last["value"]?.stringValue { return s }
        // One sharegpt turn: {"from": "gpt", "value": …}, or one message.
        if let s = v["value"]?.stringValue ?? v["content"]?.stringValue { return s }
        throw fail("expected a string, a message or a list of messages")
    }
}
