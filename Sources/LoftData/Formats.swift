import Foundation
import LoftTemplates

/// The row formats Loft understands (Axolotl's `type:` names map onto these).
public enum DataFormat: String, Sendable, Codable, CaseIterable {
    /// instruction, input, output, (system)
    case alpaca
    /// conversations: [{from, value}]
    case sharegpt
    /// messages: [{role, content}] (Axolotl's chat_template)
    case messages
    /// text: raw text, every token trained (Axolotl's completion)
    case text
    /// prompt + completion
    case promptCompletion = "prompt_completion"
    /// segments: [{label, text}]
    case inputOutput = "input_output"
    /// chosen/rejected pairs (DPO, ORPO…): detected, not trainable with SFT
    case preference
    /// a boolean `label` per row (KTO): detected, not trainable with SFT
    case kto

    /// Reads a `type:` value; nil when unknown.
    public init?(typeName: String) {
        switch typeName.lowercased() {
        case "alpaca", "alpaca_chat", "instruction": self = .alpaca
        case "sharegpt", "conversations": self = .sharegpt
        case "chat_template", "messages", "chatml", "openai": self = .messages
        case "completion", "text", "pretrain", "raw": self = .text
        case "prompt_completion", "prompt/completion", "prompt-completion": self = .promptCompletion
        case "input_output": self = .inputOutput
        case "dpo", "preference", "chosen_rejected", "orpo", "ipo", "simpo": self = .preference
        case "kto": self = .kto
        default: return nil
        }
    }

    /// What `type:` to write for this format.
    public var typeName: String {
        switch self {
        case .alpaca: return "alpaca"
        case .sharegpt: return "sharegpt"
        case .messages: return "messages"
        case .text: return "completion"
        case .promptCompletion: return "prompt_completion"
        case .inputOutput: return "input_output"
        case .preference: return "dpo"
        case .kto: return "kto"
        }
    }

    var isPreference: Bool { self == .preference || self == .kto }
}

/// A row converted for training: a conversation for the chat template, or plain text segments.
enum Sample {
    /// `train[i]`: explicit per-message flag (loss_weight / train / weight), nil = by role.
    case chat(messages: [JinjaValue], train: [Bool?], tools: [JinjaValue]?)
    case plain(segments: [(text: String, trained: Bool)], appendEOS: Bool)
}

/// Field lookup through a dataset's `fieldMap`.
struct Fields {
    let map: [String: String]
    func name(_ field: String) -> String { map[field] ?? field }
    func get(_ row: JinjaObject, _ field: String) -> JinjaValue? {
        if let v = row[name(field)], v != .null { return v }
        return nil
    }
}

enum FormatDetector {
    /// The formats a row's keys fit, most specific first.
    static func candidates(_ row: JinjaObject, fields: Fields) -> [DataFormat] {
        func has(_ f: String) -> Bool { fields.get(row, f) != nil }
        if (has("chosen") && has("rejected")) || (has("chosen_messages") && has("rejected_messages")) { return [.preference] }
        if case .bool? = fields.get(row, "label"), has("messages") || has("conversations") || has("completion") || has("prompt") { return [.kto] }
        var c: [DataFormat] = []
        if has("messages") {
            // LLaMA-Factory's sharegpt variant keeps from/value under `messages`; both parse the same way.
            c.append(.messages)
        }
        if has("conversations") { c.append(.sharegpt) }
        if has("instruction") && has("output") { c.append(.alpaca) }
        if has("prompt") && has("completion") { c.append(.promptCompletion) }
        if has("segments") { c.append(.inputOutput) }
        if has("text") && c.isEmpty { c.append(.text) }
        return c
    }

    /// Detects the format from the first rows.
    static func detect(_ rows: [RawRow], fields: Fields, file: String) throws -> DataFormat {
        guard let first = rows.first(where: { if case .object = $0.value { return true } else { return false } }),
              case .object(let o) = first.value else {
            throw DataError(file: file, row: rows.first?.row, "no row is a JSON object",
                            fix: "each row must be an object such as {\"instruction\": …, \"output\": …} or {\"messages\": […]}")
        }
        let c = candidates(o, fields: fields)
        if c.count > 1 {
            throw DataError(file: file, row: first.row, "the format is ambiguous: the row fits \(c.map { "`\($0.typeName)`" }.joined(separator: " and "))",
                            fix: "set `type:` to one of them in the dataset entry")
        }
        guard let f = c.first else {
            throw DataError(file: file, row: first.row, "cannot tell the format from the keys \(o.keys.map { "`\($0)`" }.joined(separator: ", "))",
                            fix: "use one of: alpaca (instruction/input/output), messages ([{role, content}]), sharegpt (conversations of {from, value}), prompt/completion, text; or map your columns with `field_map` (e.g. field_map: {instruction: question, output: answer})")
        }
        return f
    }
}

/// Turns rows into samples.
struct RowConverter {
    let format: DataFormat
    let fields: Fields
    let roleMap: [String: String]
    let variables: [String: String]
    /// The template renders `tool_calls`: function calls become structured tool calls.
    let templateHandlesToolCalls: Bool
    let trainOnInputs: Bool

    static let defaultRoles: [String: String] = [
        "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "model": "assistant", "bot": "assistant",
        "chatgpt": "assistant", "system": "system", "tool": "tool", "observation": "tool", "function_response": "tool",
        "ipython": "tool", "function_call": "assistant", "tool_call": "assistant", "developer": "system",
    ]

    init(format: DataFormat, spec: DatasetSpec, templateHandlesToolCalls: Bool, trainOnInputs: Bool) {
        self.format = format
        fields = Fields(map: spec.fieldMap)
        roleMap = RowConverter.defaultRoles.merging(spec.roleMap ?? [:]) { $1 }
        variables = spec.variables
        self.templateHandlesToolCalls = templateHandlesToolCalls
        self.trainOnInputs = trainOnInputs
    }

    func err(_ row: RawRow, _ field: String?, _ message: String, _ fix: String, reason: BadRowReason? = nil) -> DataError {
        DataError(file: row.file, row: row.row, field: field, message, fix: fix, reason: reason)
    }

    func convert(_ raw: RawRow) throws -> Sample {
        guard case .object(let obj0) = raw.value else {
            throw err(raw, nil, "the row is a \(typeName(raw.value)), not an object", "each row must be a JSON object; fix or remove it")
        }
        let row = variables.isEmpty ? obj0 : substitute(obj0)
        switch format {
        case .preference, .kto:
            throw err(raw, nil, "preference data cannot be trained with SFT", "DPO/KTO are not supported yet; remove this dataset")
        case .alpaca: return try alpaca(raw, row)
        case .messages, .sharegpt: return try conversation(raw, row)
        case .text:
            let t = try string(raw, row, "text", required: true) ?? ""
            return .plain(segments: [(t, true)], appendEOS: true)
        case .promptCompletion: return try promptCompletion(raw, row)
        case .inputOutput: return try inputOutput(raw, row)
        }
    }

    /// The row does not fit the configured format: say what it looks like.
    func mismatch(_ raw: RawRow, _ row: JinjaObject, missing field: String) -> DataError {
        let looks = FormatDetector.candidates(row, fields: fields)
        if let other = looks.first, other != format {
            let key: String
            switch other {
            case .alpaca: key = "instruction"
            case .sharegpt: key = "conversations"
            case .messages: key = "messages"
            case .text: key = "text"
            case .promptCompletion: key = "prompt"
            case .inputOutput: key = "segments"
            case .preference: key = "chosen"
            case .kto: key = "label"
            }
            return err(raw, field, "row \(raw.row) has `\(fields.name(key))` but the config says `type: \(format.typeName)`",
                       "set `type: \(other.typeName)` or remove `type`", reason: .wrongFormat)
        }
        return err(raw, field, "missing `\(fields.name(field))` (needed by `type: \(format.typeName)`); the row has \(row.keys.map { "`\($0)`" }.joined(separator: ", "))",
                   "add the field, map your column to it with `field_map: {\(field): YOUR_COLUMN}`, or set the right `type:`", reason: .missingField)
    }

    func string(_ raw: RawRow, _ row: JinjaObject, _ field: String, required: Bool) throws -> String? {
        guard let v = fields.get(row, field) else {
            if required { throw mismatch(raw, row, missing: field) }
            return nil
        }
        switch v {
        case .string(let s): return s
        case .int(let i): return String(i)
        case .double(let d): return String(d)
        default:
            throw err(raw, fields.name(field), "expected a string, found a \(typeName(v))", "make `\(fields.name(field))` a string")
        }
    }

    func alpaca(_ raw: RawRow, _ row: JinjaObject) throws -> Sample {
        guard fields.get(row, "instruction") != nil, fields.get(row, "output") != nil else {
            throw mismatch(raw, row, missing: fields.get(row, "instruction") == nil ? "instruction" : "output")
        }
        let instruction = try string(raw, row, "instruction", required: true) ?? ""
        let input = try string(raw, row, "input", required: false) ?? ""
        let output = try string(raw, row, "output", required: true) ?? ""
        let system = try string(raw, row, "system", required: false) ?? ""
        var messages: [JinjaValue] = []
        if !system.isEmpty { messages.append(["role": "system", "content": .string(system)]) }
        messages.append(["role": "user", "content": .string(input.isEmpty ? instruction : instruction + "\n" + input)])
        messages.append(["role": "assistant", "content": .string(output)])
        return .chat(messages: messages, train: Array(repeating: nil, count: messages.count), tools: nil)
    }

    func conversation(_ raw: RawRow, _ row: JinjaObject) throws -> Sample {
        let key = format == .sharegpt ? "conversations" : "messages"
        let fallback = format == .sharegpt ? "messages" : "conversations"
        let field = fields.get(row, key) != nil ? key : fallback
        guard let list = fields.get(row, field) else { throw mismatch(raw, row, missing: key) }
        let items: [JinjaValue]
        switch list {
        case .array(let a): items = a
        case .string(let s):
            // CSV cells hold JSON text.
            guard let v = try? JSONReader.parse(s), let a = v.arrayValue else {
                throw err(raw, fields.name(field), "expected a list of messages, found a string", "make `\(fields.name(field))` a list of {role, content}")
            }
            items = a
        default:
            throw err(raw, fields.name(field), "expected a list of messages, found a \(typeName(list))", "make `\(fields.name(field))` a list of {role, content}")
        }
        guard !items.isEmpty else {
            throw err(raw, fields.name(field), "the conversation is empty", "remove the row or add messages", reason: .emptyConversation)
        }
        var messages: [JinjaValue] = []
        var train: [Bool?] = []
        if let system = try string(raw, row, "system", required: false), !system.isEmpty {
            messages.append(["role": "system", "content": .string(system)])
            train.append(nil)
        }
        let roleKey = fields.name("role"), contentKey = fields.name("content")
        for (i, item) in items.enumerated() {
            let where_ = "\(fields.name(field))[\(i)]"
            guard case .object(let m) = item else {
                throw err(raw, where_, "expected a message object, found a \(typeName(item))", "each message must be {\"role\": …, \"content\": …}")
            }
            guard let rawRole = (m[roleKey] ?? m["role"] ?? m["from"])?.stringValue else {
                throw err(raw, where_, "the message has no `\(roleKey)` (or `from`) string", "give every message a role: user, assistant, system or tool",
                          reason: .unknownRole)
            }
            guard let role = roleMap[rawRole] ?? roleMap[rawRole.lowercased()] else {
                throw err(raw, where_, "unknown role `\(rawRole)`", "use user/assistant/system/tool, or map it with `role_map: {\(rawRole): assistant}`",
                          reason: .unknownRole)
            }
            let contentValue = m[contentKey] ?? m["content"] ?? m["value"] ?? .null
            let content: String
            switch contentValue {
            case .string(let s): content = s
            case .null:
                // An assistant turn that only calls tools has no text (OpenAI's format); any other turn needs it.
                if let calls = m["tool_calls"], calls != .null { content = ""; break }
                let present = m[contentKey] != nil || m["content"] != nil || m["value"] != nil
                throw err(raw, "\(where_).\(contentKey)", present ? "the message's content is null" : "the message has no `\(contentKey)`",
                          "give the \(rawRole) message its text as a string (\"\(contentKey)\": \"…\"), map your key with `field_map: {content: YOUR_KEY}`, or remove the row (skip_bad_rows: true / --skip-bad-rows)",
                          reason: .missingContent)
            case .array(let parts):
                var text = ""
                for (j, p) in parts.enumerated() {
                    if case .string(let s) = p { text += s; continue }
                    guard case .object(let po) = p else {
                        throw err(raw, "\(where_).content[\(j)]", "expected a content part object, found a \(typeName(p))", "use {\"type\": \"text\", \"text\": …}")
                    }
                    let type = po["type"]?.stringValue ?? "text"
                    guard type == "text" else {
                        throw err(raw, "\(where_).content[\(j)]", "`\(type)` content parts are not supported (text-only models)", "remove the non-text parts or the row")
                    }
                    guard let s = (po["text"] ?? po["value"] ?? po["content"])?.stringValue else {
                        throw err(raw, "\(where_).content[\(j)]", "the text part has no `text` string", "write it as {\"type\": \"text\", \"text\": …}")
                    }
                    text += s
                }
                content = text
            case .int, .double, .bool:
                throw err(raw, "\(where_).\(contentKey)", "expected the message text as a string, found a \(typeName(contentValue)) (\(contentValue.jsonText()))",
                          "quote it (\"\(contentKey)\": \"\(contentValue.jsonText())\"), or remove the row", reason: .nonStringContent)
            case .object:
                throw err(raw, "\(where_).\(contentKey)", "expected a string or a list of parts, found an object", "make the content a string",
                          reason: .nonStringContent)
            }
            // Per-message training flag.
            var flag: Bool? = nil
            for k in ["loss_weight", "weight"] {
                switch m[k] {
                case .int(let w)?: flag = w > 0
                case .double(let w)?: flag = w > 0
                case .bool(let b)?: flag = b
                case nil, .null?: break
                case let other?:
                    throw err(raw, "\(where_).\(k)", "expected a number, found a \(typeName(other))", "use 0 (not trained) or 1 (trained)")
                }
            }
            for k in ["train", "training"] {
                switch m[k] {
                case .bool(let b)?: flag = b
                case .int(let w)?: flag = w != 0
                case nil, .null?: break
                case let other?:
                    throw err(raw, "\(where_).\(k)", "expected true or false, found a \(typeName(other))", "use true or false")
                }
            }
            var out = JinjaObject()
            out["role"] = .string(role)
            out["content"] = .string(content)
            let isCall = rawRole == "function_call" || rawRole == "tool_call"
            if isCall && templateHandlesToolCalls, case .object(let call)? = try? JSONReader.parse(content), let name = call["name"]?.stringValue {
                out["content"] = .string("")
                out["tool_calls"] = [["type": "function", "function": ["name": .string(name), "arguments": call["arguments"] ?? .object(JinjaObject())]]]
            }
            for (k, v) in m.pairs where !["role", "from", "content", "value", "loss_weight", "weight", "train", "training", roleKey, contentKey].contains(k) {
                out[k] = v
            }
            messages.append(.object(out))
            train.append(flag)
        }
        var tools: [JinjaValue]? = nil
        if let t = fields.get(row, "tools") {
            switch t {
            case .array(let a): tools = a.isEmpty ? nil : a
            case .string(let s):
                if !s.trimmingCharacters(in: .whitespaces).isEmpty {
                    guard let v = try? JSONReader.parse(s) else {
                        throw err(raw, fields.name("tools"), "the tools string is not valid JSON", "make it a JSON list of tool definitions, or remove it")
                    }
                    switch v {
                    case .array(let a): tools = a.isEmpty ? nil : a
                    case .object: tools = [v]
                    default: throw err(raw, fields.name("tools"), "expected a list of tools, found a \(typeName(v))", "make it a list of tool definitions")
                    }
                }
            default:
                throw err(raw, fields.name("tools"), "expected a list of tools, found a \(typeName(t))", "make it a list of tool definitions")
            }
        }
        return .chat(messages: messages, train: train, tools: tools)
    }

    func promptCompletion(_ raw: RawRow, _ row: JinjaObject) throws -> Sample {
        guard let p = fields.get(row, "prompt"), let c = fields.get(row, "completion") else {
            throw mismatch(raw, row, missing: fields.get(row, "prompt") == nil ? "prompt" : "completion")
        }
        if case .array = p, case .array = c {
            // Conversational prompt/completion (TRL): the completion's messages are trained.
            let pc = try conversation(raw, JinjaObject([("messages", p)]))
            let cc = try conversation(raw, JinjaObject([("messages", c)]))
            guard case .chat(let pm, let pt, _) = pc, case .chat(let cm, let ct, _) = cc else { throw mismatch(raw, row, missing: "prompt") }
            return .chat(messages: pm + cm, train: pt.map { $0 ?? false } + ct.map { $0 ?? true }, tools: nil)
        }
        let prompt = try string(raw, row, "prompt", required: true) ?? ""
        let completion = try string(raw, row, "completion", required: true) ?? ""
        return .plain(segments: [(prompt, trainOnInputs), (completion, true)], appendEOS: true)
    }

    func inputOutput(_ raw: RawRow, _ row: JinjaObject) throws -> Sample {
        guard let s = fields.get(row, "segments") else { throw mismatch(raw, row, missing: "segments") }
        guard case .array(let segs) = s else {
            throw err(raw, fields.name("segments"), "expected a list of {label, text}, found a \(typeName(s))", "make it [{\"label\": true, \"text\": …}]")
        }
        var out: [(String, Bool)] = []
        for (i, seg) in segs.enumerated() {
            guard case .string(let t)? = seg["text"] else {
                throw err(raw, "segments[\(i)].text", "missing or not a string", "give every segment a `text` string")
            }
            var label = true
            if let l = seg["label"] {
                guard case .bool(let b) = l else {
                    throw err(raw, "segments[\(i)].label", "expected true or false, found a \(typeName(l))", "use true (trained) or false")
                }
                label = b
            }
            out.append((t, label))
        }
        return .plain(segments: out, appendEOS: false)
    }

    /// {{name}} → value in every string of the row.
    func substitute(_ o: JinjaObject) -> JinjaObject {
        var r = JinjaObject()
        for (k, v) in o.pairs { r[k] = substitute(v) }
        return r
    }

    func substitute(_ v: JinjaValue) -> JinjaValue {
        switch v {
        case .string(let s):
            guard s.contains("{{") else { return v }
            var t = s
            for (k, val) in variables { t = t.replacingOccurrences(of: "{{" + k + "}}", with: val) .replacingOccurrences(of: "{{ " + k + " }}", with: val) }
            return .string(t)
        case .array(let a): return .array(a.map(substitute))
        case .object(let o): return .object(substitute(o))
        default: return v
        }
    }
}

/// The `{{name}}` placeholders left in a value's strings.
func unfilledPlaceholders(_ v: JinjaValue, into found: inout Set<String>) {
    switch v {
    case .string(let s):
        guard s.contains("{{") else { return }
        let scalars = Array(s.unicodeScalars)
        var i = 0
        while i + 1 < scalars.count {
            if scalars[i] == "{" && scalars[i + 1] == "{" {
                var j = i + 2
                while j < scalars.count && scalars[j] == " " { j += 1 }
                let start = j
                while j < scalars.count && (scalars[j] == "_" || (scalars[j].properties.isAlphabetic && scalars[j].isASCII) || ("0"..."9").contains(scalars[j])) { j += 1 }
                let name = String(String.UnicodeScalarView(scalars[start..<j]))
                while j < scalars.count && scalars[j] == " " { j += 1 }
                if !name.isEmpty && j + 1 < scalars.count && scalars[j] == "}" && scalars[j + 1] == "}" {
                    found.insert(name)
                    i = j + 2
                    continue
                }
            }
            i += 1
        }
    case .array(let a): for x in a { unfilledPlaceholders(x, into: &found) }
    case .object(let o): for (_, x) in o.pairs { unfilledPlaceholders(x, into: &found) }
    default: break
    }
}
