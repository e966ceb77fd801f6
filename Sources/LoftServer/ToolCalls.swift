import Foundation
import LoftTemplates

/// A function call the model made, as OpenAI's `tool_calls` carries it.
public struct ToolCall: Sendable, Equatable {
    public var id: String
    public var name: String
    /// The arguments as JSON text (OpenAI sends a string, not an object).
    public var arguments: String
}

/// Reads tool calls back out of generated text, in the formats the families'
/// chat templates teach: Hermes/Qwen `<tool_call>{"name", "arguments"}</tool_call>`
/// (any number, after optional content), Llama 3.x `{"name", "parameters"}`
/// (optionally after `<|python_tag|>`, several joined by `;`), and Mistral
/// `[TOOL_CALLS][{"name", "arguments"}, …]`. Only calls of offered functions count.
public enum ToolCallParser {
    static let hermesOpen = "<tool_call>", hermesClose = "</tool_call>"
    static let pythonTag = "<|python_tag|>", mistralTag = "[TOOL_CALLS]"

    /// The content before the calls (nil when there is none) and the calls, or
    /// nil when the text holds no call of a function in `functionNames`.
    public static func parse(_ text: String, functionNames: Set<String>) -> (content: String?, calls: [ToolCall])? {
        if let r = text.range(of: hermesOpen) {
            var calls: [ToolCall] = []
            var rest = text[r.lowerBound...]
            while let open = rest.range(of: hermesOpen) {
                let bodyStart = open.upperBound
                let close = rest[bodyStart...].range(of: hermesClose)
                let body = rest[bodyStart..<(close?.lowerBound ?? rest.endIndex)]
                guard let call = call(fromJSON: String(body), argumentKeys: ["arguments", "parameters"], names: functionNames) else { return nil }
                calls.append(call)
                rest = close.map { rest[$0.upperBound...] } ?? rest[rest.endIndex...]
            }
            let content = text[..<r.lowerBound].trimmingCharacters(in: .whitespacesAndNewlines)
            return calls.isEmpty ? nil : (content.isEmpty ? nil : content, calls)
        }
        var body = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if body.hasPrefix(mistralTag) {
            body = String(body.dropFirst(mistralTag.count))
            guard case .array(let items)? = try? JSONReader.parse(body) else { return nil }
            let calls = items.compactMap { call(from: $0, argumentKeys: ["arguments", "parameters"], names: functionNames) }
            return calls.count == items.count && !calls.isEmpty ? (nil, calls) : nil
        }
        if body.hasPrefix(pythonTag) { body = String(body.dropFirst(pythonTag.count)) }
        guard body.hasPrefix("{") else { return nil }
        var calls: [ToolCall] = []
        for part in splitTopLevel(body, separator: ";") {
            guard let c = call(fromJSON: part, argumentKeys: ["parameters", "arguments"], names: functionNames) else { return nil }
            calls.append(c)
        }
        return calls.isEmpty ? nil : (nil, calls)
    }

    static func call(fromJSON text: String, argumentKeys: [String], names: Set<String>) -> ToolCall? {
        guard let v = try? JSONReader.parse(text.trimmingCharacters(in: .whitespacesAndNewlines)) else { return nil }
        return call(from: v, argumentKeys: argumentKeys, names: names)
    }

    static func call(from value: JinjaValue, argumentKeys: [String], names: Set<String>) -> ToolCall? {
        guard case .object(let o) = value, case .string(let name)? = o["name"], names.contains(name) else { return nil }
        var args: JinjaValue = .object(JinjaObject())
        for k in argumentKeys { if let a = o[k] { args = a; break } }
        let text: String
        if case .string(let s) = args { text = s } else { text = args.jsonText() }
        return ToolCall(id: newCallID(), name: name, arguments: text)
    }

    /// Splits on `separator` outside JSON strings and brackets.
    static func splitTopLevel(_ text: String, separator: Character) -> [String] {
        var parts: [String] = [], current = "", depth = 0, inString = false, escaped = false
        for ch in text {
            if inString {
                if escaped { escaped = false } else if ch == "\\" { escaped = true } else if ch == "\"" { inString = false }
            } else if ch == "\"" { inString = true }
            else if ch == "{" || ch == "[" { depth += 1 }
            else if ch == "}" || ch == "]" { depth -= 1 }
            else if ch == separator && depth == 0 {
                parts.append(current); current = ""; continue
            }
            current.append(ch)
        }
        if !current.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { parts.append(current) }
        return parts
    }

    static func newCallID() -> String {
        "call_" + String((0..<24).map { _ in "abcdefghijklmnopqrstuvwxyz0123456789".randomElement()! })
    }

    /// Whether text that starts this way (leading space dropped) may still turn
    /// out to be a whole-message tool call, so a stream must hold it back.
    static func mayStartCall(_ text: Substring) -> Bool {
        let t = text.drop { $0.isWhitespace }
        if t.isEmpty { return true }
        for marker in [hermesOpen, pythonTag, mistralTag, "{"] {
            if t.hasPrefix(marker) || marker.hasPrefix(t) { return true }
        }
        return false
    }
}

/// Streams text while a tool call may be forming: content goes out as it
/// comes, anything that may be (the start of) a call is held until the choice
/// ends and is then either parsed into calls or released as text.
struct ToolCallStreamFilter {
    let functionNames: Set<String>
    private var emitted = ""          // text already sent
    private var held = ""             // text not yet sent
    private var decidedContent = false

    init(functionNames: Set<String>) { self.functionNames = functionNames }

    /// The text to send now.
    mutating func feed(_ text: String) -> String {
        held += text
        if !decidedContent {
            if ToolCallParser.mayStartCall(Substring(held)) { return "" }
            decidedContent = true
        }
        // Hold from a Hermes `<tool_call>` (or what may become one) onwards.
        let open = ToolCallParser.hermesOpen
        var cut = held.endIndex
        if let r = held.range(of: open) { cut = r.lowerBound }
        else {
            for k in stride(from: min(open.count - 1, held.count), through: 1, by: -1) {
                if open.hasPrefix(held.suffix(k)) { cut = held.index(held.endIndex, offsetBy: -k); break }
            }
        }
        let out = String(held[..<cut])
        held = String(held[cut...])
        emitted += out
        return out
    }

    /// At the end of the choice: the held text to send, and the calls if any.
    mutating func finish() -> (text: String, calls: [ToolCall]) {
        defer { held = "" }
        if let parsed = ToolCallParser.parse(emitted + held, functionNames: functionNames) {
            // Content before a Hermes call was already sent; the rest was the calls.
            let sentContent = emitted.trimmingCharacters(in: .whitespacesAndNewlines)
            let unsent = (parsed.content ?? "").hasPrefix(sentContent) ? String((parsed.content ?? "").dropFirst(sentContent.count)) : ""
            return (unsent, parsed.calls)
        }
        return (held, [])
    }
}
