import Foundation
import LoftTemplates

/// A preference row before tokenizing: a prompt and one or two completions,
/// each a conversation (rendered with the chat template) or plain text
/// (TRL's "standard" format: no template, EOS appended to completions).
enum PreferenceContent: Equatable {
    case messages([JinjaValue])
    case text(String)
}

struct PreferenceRow {
    var prompt: PreferenceContent
    var chosen: PreferenceContent
    /// nil for KTO rows.
    var rejected: PreferenceContent?
    var label: Bool?
    var tools: [JinjaValue]?
}

/// The layouts of preference rows Loft reads (all detected from the keys;
/// Axolotl's `type:` names choose the field layout).
enum PreferenceLayout: String, CaseIterable {
    /// LLaMA-Factory sharegpt: `conversations` (the prompt), `chosen` and `rejected` single messages.
    case sharegpt
    /// `prompt` + `chosen` + `rejected`, strings or message lists (TRL's explicit prompt).
    case explicitPrompt = "prompt_chosen_rejected"
    /// `chosen` + `rejected` whole conversations (or texts) sharing a prefix (TRL's implicit prompt).
    case implicitPrompt = "chosen_rejected"
    /// LLaMA-Factory v1: `chosen_messages` + `rejected_messages`.
    case messagesPairs = "chosen_messages"
    /// KTO: `messages`/`conversations` (last message the completion) or `prompt` + `completion`, with a boolean `label`.
    case kto
    /// Axolotl chatml.intel / llama3.intel: `system`, `question`, `chosen`, `rejected` strings.
    case intel
    /// Axolotl chatml.argilla / llama3.argilla: `instruction`, `chosen_response`, `rejected_response`.
    case argilla

    /// Axolotl's DPO `type:` values, by their field layout.
    init?(axolotlType t: String) {
        let lower = t.lowercased()
        let layout = lower.split(separator: ".").last.map(String.init) ?? lower
        switch layout {
        case "intel": self = .intel
        case "argilla", "argilla_chat": self = .argilla
        case "ultra", "default", "prompt_pairs", "icr": self = .explicitPrompt
        case "kto": self = .kto
        case "dpo", "preference", "orpo", "ipo", "simpo", "chosen_rejected", "chat_template": return nil  // detect
        default: return nil
        }
    }

    static func detect(_ row: JinjaObject, fields: Fields) -> PreferenceLayout? {
        func has(_ f: String) -> Bool { fields.get(row, f) != nil }
        if case .bool? = fields.get(row, "label") { return .kto }
        if has("chosen_messages") && has("rejected_messages") { return .messagesPairs }
        if has("question") && has("chosen") && has("rejected") { return .intel }
        if has("chosen_response") && has("rejected_response") { return .argilla }
        if has("chosen") && has("rejected") {
            if has("prompt") { return .explicitPrompt }
            if has("conversations") || has("messages") { return .sharegpt }
            return .implicitPrompt
        }
        return nil
    }
}

/// Rows of any preference layout → `PreferenceRow`.
struct PreferenceRowConverter {
    let layout: PreferenceLayout
    let messages: RowConverter
    var fields: Fields { messages.fields }

    init(layout: PreferenceLayout, spec: DatasetSpec, templateHandlesToolCalls: Bool) {
        self.layout = layout
        messages = RowConverter(format: .messages, spec: spec, templateHandlesToolCalls: templateHandlesToolCalls, trainOnInputs: false)
    }

    func err(_ raw: RawRow, _ field: String?, _ message: String, _ fix: String) -> DataError {
        DataError(file: raw.file, row: raw.row, field: field, message, fix: fix)
    }

    /// A message list (or one message, or a sharegpt turn) as chat messages.
    func conversation(_ raw: RawRow, _ value: JinjaValue, field: String) throws -> [JinjaValue] {
        let list: JinjaValue
        if case .object = value { list = .array([value]) } else { list = value }
        guard case .chat(let msgs, _, _) = try messages.conversation(raw, JinjaObject([("messages", list)])) else {
            throw err(raw, field, "expected a list of messages", "make `\(field)` a list of {role, content}")
        }
        return msgs
    }

    /// A field that is either text or messages.
    func content(_ raw: RawRow, _ row: JinjaObject, _ field: String) throws -> PreferenceContent {
        guard let v = fields.get(row, field) else {
            throw err(raw, fields.name(field), "missing `\(fields.name(field))`; the row has \(row.keys.map { "`\($0)`" }.joined(separator: ", "))",
                      "add it, or map your column with `field_map: {\(field): YOUR_COLUMN}`")
        }
        switch v {
        case .string(let s): return .text(s)
        case .array, .object: return .messages(try conversation(raw, v, field: fields.name(field)))
        default:
            throw err(raw, fields.name(field), "expected text or a list of messages, found a \(typeName(v))", "make it a string or a list of {role, content}")
        }
    }

    func string(_ raw: RawRow, _ row: JinjaObject, _ field: String, required: Bool = true) throws -> String? {
        guard let v = fields.get(row, field) else {
            if required { throw err(raw, fields.name(field), "missing `\(fields.name(field))` (needed by this layout)", "add it or map it with `field_map`") }
            return nil
        }
        guard case .string(let s) = v else { throw err(raw, fields.name(field), "expected a string, found a \(typeName(v))", "make it a string") }
        return s
    }

    func convert(_ raw: RawRow) throws -> PreferenceRow {
        guard case .object(let row) = raw.value else {
            throw err(raw, nil, "the row is a \(typeName(raw.value)), not an object", "each row must be a JSON object")
        }
        switch layout {
        case .sharegpt:
            let key = fields.get(row, "conversations") != nil ? "conversations" : "messages"
            var prompt = try conversation(raw, fields.get(row, key)!, field: fields.name(key))
            if let system = try string(raw, row, "system", required: false), !system.isEmpty {
                prompt.insert(["role": "system", "content": .string(system)], at: 0)
            }
            return PreferenceRow(prompt: .messages(prompt), chosen: try content(raw, row, "chosen"),
                                 rejected: try content(raw, row, "rejected"), tools: try tools(raw, row))
        case .explicitPrompt:
            var prompt = try content(raw, row, "prompt")
            var chosen = try content(raw, row, "chosen"), rejected = try content(raw, row, "rejected")
            // A text prompt with conversational completions (Axolotl's ultra): the prompt is one user turn.
            if case .text(let p) = prompt, case .messages = chosen {
                prompt = .messages([["role": "user", "content": .string(p)]])
            }
            // Conversational prompt, text completions: each is one assistant turn.
            if case .messages = prompt {
                if case .text(let c) = chosen { chosen = .messages([["role": "assistant", "content": .string(c)]]) }
                if case .text(let r) = rejected { rejected = .messages([["role": "assistant", "content": .string(r)]]) }
            }
            try sameKind(raw, prompt, chosen, rejected)
            return PreferenceRow(prompt: prompt, chosen: chosen, rejected: rejected, tools: try tools(raw, row))
        case .implicitPrompt, .messagesPairs:
            let (ck, rk) = layout == .messagesPairs ? ("chosen_messages", "rejected_messages") : ("chosen", "rejected")
            let chosen = try content(raw, row, ck), rejected = try content(raw, row, rk)
            return try splitImplicit(raw, chosen, rejected, tools: try tools(raw, row))
        case .kto:
            guard case .bool(let label)? = fields.get(row, "label") else {
                throw err(raw, fields.name("label"), "KTO rows need a boolean `label` (true: desirable)", "add \"label\": true or false")
            }
            if fields.get(row, "prompt") != nil {
                var prompt = try content(raw, row, "prompt"), completion = try content(raw, row, "completion")
                if case .messages = prompt, case .text(let c) = completion { completion = .messages([["role": "assistant", "content": .string(c)]]) }
                if case .text(let p) = prompt, case .messages = completion { prompt = .messages([["role": "user", "content": .string(p)]]) }
                try sameKind(raw, prompt, completion, nil)
                return PreferenceRow(prompt: prompt, chosen: completion, rejected: nil, label: label, tools: try tools(raw, row))
            }
            let key = fields.get(row, "messages") != nil ? "messages" : "conversations"
            guard let list = fields.get(row, key) else {
                throw err(raw, nil, "a KTO row needs `messages` (the last one is the completion) or `prompt` + `completion`", "add them, or map your columns with `field_map`")
            }
            let msgs = try conversation(raw, list, field: fields.name(key))
            guard msgs.count >= 2, msgs.last?["role"]?.stringValue == "assistant" else {
                throw err(raw, fields.name(key), "the last message must be the assistant's completion, after at least one prompt message",
                          "end the conversation with the assistant turn being judged")
            }
            return PreferenceRow(prompt: .messages(Array(msgs.dropLast())), chosen: .messages([msgs.last!]), rejected: nil,
                                 label: label, tools: try tools(raw, row))
        case .intel, .argilla:
            let (q, c, r) = layout == .intel ? ("question", "chosen", "rejected") : ("instruction", "chosen_response", "rejected_response")
            var prompt: [JinjaValue] = []
            if let system = try string(raw, row, "system", required: false), !system.isEmpty {
                prompt.append(["role": "system", "content": .string(system)])
            }
            prompt.append(["role": "user", "content": .string(try string(raw, row, q)!)])
            return PreferenceRow(prompt: .messages(prompt),
                                 chosen: .messages([["role": "assistant", "content": .string(try string(raw, row, c)!)]]),
                                 rejected: .messages([["role": "assistant", "content": .string(try string(raw, row, r)!)]]))
        }
    }

    func sameKind(_ raw: RawRow, _ a: PreferenceContent, _ b: PreferenceContent, _ c: PreferenceContent?) throws {
        func isText(_ x: PreferenceContent) -> Bool { if case .text = x { return true } else { return false } }
        let kinds = [a, b] + (c.map { [$0] } ?? [])
        if Set(kinds.map(isText)).count > 1 {
            throw err(raw, nil, "the prompt and completions mix plain text and message lists",
                      "make them all strings, or all lists of {role, content}")
        }
    }

    /// TRL's `extract_prompt`: the longest common prefix of the two (whole
    /// messages, or characters backed off a space for text) is the prompt.
    func splitImplicit(_ raw: RawRow, _ chosen: PreferenceContent, _ rejected: PreferenceContent, tools: [JinjaValue]?) throws -> PreferenceRow {
        switch (chosen, rejected) {
        case (.messages(let c), .messages(let r)):
            var idx = min(c.count, r.count)
            for i in 0 ..< min(c.count, r.count) where c[i] != r[i] { idx = i; break }
            guard idx > 0, idx < c.count, idx < r.count else {
                throw err(raw, nil, idx == 0 ? "chosen and rejected share no first message, so there is no prompt"
                                              : "chosen and rejected are identical up to the end of one of them",
                          "give both the same prompt messages followed by different assistant answers, or use explicit `prompt`/`chosen`/`rejected`")
            }
            return PreferenceRow(prompt: .messages(Array(c[..<idx])), chosen: .messages(Array(c[idx...])),
                                 rejected: .messages(Array(r[idx...])), tools: tools)
        case (.text(let c), .text(let r)):
            let cs = Array(c.unicodeScalars), rs = Array(r.unicodeScalars)
            var idx = min(cs.count, rs.count)
            for i in 0 ..< min(cs.count, rs.count) where cs[i] != rs[i] {
                idx = i
                if i > 0 && cs[i - 1] == " " { idx = i - 1 }
                break
            }
            func text(_ s: ArraySlice<Unicode.Scalar>) -> String { String(String.UnicodeScalarView(s)) }
            return PreferenceRow(prompt: .text(text(cs[..<idx])), chosen: .text(text(cs[idx...])), rejected: .text(text(rs[idx...])), tools: tools)
        default:
            throw err(raw, nil, "chosen and rejected must both be strings or both be message lists", "make them the same kind")
        }
    }

    func tools(_ raw: RawRow, _ row: JinjaObject) throws -> [JinjaValue]? {
        guard let t = fields.get(row, "tools") else { return nil }
        if case .array(let a) = t { return a.isEmpty ? nil : a }
        if case .string(let s) = t, s.trimmingCharacters(in: .whitespaces).isEmpty { return nil }
        if case .string(let s) = t, let v = try? JSONReader.parse(s), case .array(let a) = v { return a.isEmpty ? nil : a }
        throw err(raw, fields.name("tools"), "expected a list of tools", "make it a list of tool definitions")
    }
}
