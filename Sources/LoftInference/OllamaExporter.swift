import Foundation
import LoftFormats
import LoftModels
import LoftTemplates

/// `loft export ollama`: a GGUF of the model (adapter merged) and a Modelfile
/// whose TEMPLATE is the chat template translated into Ollama's Go template
/// syntax, with the PARAMETER stop lines for its end-of-turn tokens.
/// Translated families: ChatML (`<|im_start|>`, Qwen, SmolLM) and Llama 3
/// (`<|start_header_id|>`). A default system message that the Jinja template
/// inserts when the conversation has none is found by rendering it, and kept.
public enum OllamaExporter {
    /// A chat format as per-role text around each message.
    public struct ChatFormat: Equatable {
        public let name: String
        /// Text before a message, with `ROLE` for the role.
        public let messagePrefix: String
        public let messageSuffix: String
        /// What starts the assistant's reply.
        public let generationPrompt: String
        /// Text before the first message (e.g. BOS written by the template), usually empty.
        public let start: String
        public let defaultSystem: String?
        public let stops: [String]

        /// The conversation as this format renders it (what the Go template produces).
        public func render(_ messages: [(role: String, content: String)]) -> String {
            var out = start
            var msgs = messages
            if let d = defaultSystem, msgs.first?.role != "system" { msgs.insert(("system", d), at: 0) }
            for m in msgs {
                out += messagePrefix.replacingOccurrences(of: "ROLE", with: m.role) + m.content + messageSuffix
            }
            return out + generationPrompt
        }

        /// The Ollama TEMPLATE (Go text/template).
        public var goTemplate: String {
            func esc(_ s: String) -> String { s }
            var t = start
            if let d = defaultSystem {
                t += "{{- if or (not .Messages) (ne (index .Messages 0).Role \"system\") }}"
                t += messagePrefix.replacingOccurrences(of: "ROLE", with: "system") + d + messageSuffix + "{{ end }}"
            }
            let pre = messagePrefix.components(separatedBy: "ROLE")
            t += "{{- range .Messages }}" + pre[0] + "{{ .Role }}" + (pre.count > 1 ? pre[1] : "") + "{{ .Content }}" + messageSuffix + "{{ end }}"
            t += generationPrompt
            return esc(t)
        }
    }

    /// Recognises the template's family and its default system message.
    public static func chatFormat(_ template: ChatTemplate) throws -> ChatFormat {
        let src = template.source
        func render(_ msgs: [(String, String)]) throws -> String {
            try template.render(messages: msgs.map { ["role": .string($0.0), "content": .string($0.1)] }, addGenerationPrompt: true)
        }
        var format: ChatFormat
        if src.contains("<|im_start|>") {
            format = ChatFormat(name: "chatml", messagePrefix: "<|im_start|>ROLE\n", messageSuffix: "<|im_end|>\n",
                                generationPrompt: "<|im_start|>assistant\n", start: "", defaultSystem: nil,
                                stops: ["<|im_start|>", "<|im_end|>"])
        } else if src.contains("<|start_header_id|>") {
            format = ChatFormat(name: "llama3", messagePrefix: "<|start_header_id|>ROLE<|end_header_id|>\n\n",
                                messageSuffix: "<|eot_id|>", generationPrompt: "<|start_header_id|>assistant<|end_header_id|>\n\n",
                                start: "", defaultSystem: nil, stops: ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"])
        } else {
            throw FormatError("chat template", "only ChatML and Llama 3 templates are translated to Ollama's syntax; write the Modelfile's TEMPLATE by hand")
        }
        // What precedes the first user message when there is no system message: BOS, a default system turn.
        let userOnly = try render([("user", "U")])
        let tail = format.render([("user", "U")])
        guard userOnly.hasSuffix(tail) else {
            throw FormatError("chat template", "renders a \(format.name) conversation differently than Loft's translation (\(userOnly.debugDescription)); write the Modelfile's TEMPLATE by hand")
        }
        var head = String(userOnly.dropLast(tail.count))
        var start = ""
        for bos in ["<|begin_of_text|>", "<s>"] where head.hasPrefix(bos) { start = bos; head.removeFirst(bos.count) }
        var defaultSystem: String? = nil
        let sp = format.messagePrefix.replacingOccurrences(of: "ROLE", with: "system")
        if head.hasPrefix(sp), head.hasSuffix(format.messageSuffix) {
            defaultSystem = String(head.dropFirst(sp.count).dropLast(format.messageSuffix.count))
        } else if !head.isEmpty {
            throw FormatError("chat template", "puts \(head.debugDescription) before the first message, which Loft cannot translate; write the TEMPLATE by hand")
        }
        // Llama 3 templates write BOS themselves; llama.cpp adds it from the GGUF's add_bos_token, so leave it out.
        format = ChatFormat(name: format.name, messagePrefix: format.messagePrefix, messageSuffix: format.messageSuffix,
                            generationPrompt: format.generationPrompt, start: "", defaultSystem: defaultSystem, stops: format.stops)
        _ = start
        // The translation must render conversations as the template does (after the BOS llama.cpp adds).
        for msgs in [[("system", "S"), ("user", "U")], [("user", "U"), ("assistant", "A"), ("user", "V")]] {
            var want = try render(msgs)
            for bos in ["<|begin_of_text|>", "<s>"] where want.hasPrefix(bos) { want.removeFirst(bos.count) }
            guard want == format.render(msgs.map { (role: $0.0, content: $0.1) }) else {
                throw FormatError("chat template", "renders \(msgs.map(\.0)) as \(want.debugDescription), which the \(format.name) translation does not reproduce (e.g. it rewrites the system message); write the Modelfile's TEMPLATE by hand")
            }
        }
        return format
    }

    /// The Modelfile text for `ggufName` (a path relative to the Modelfile).
    public static func modelfile(ggufName: String, format: ChatFormat) -> String {
        var s = "FROM ./\(ggufName)\n\n"
        s += "TEMPLATE \"\"\"\(format.goTemplate)\"\"\"\n\n"
        for stop in format.stops { s += "PARAMETER stop \"\(stop)\"\n" }
        return s
    }

    public struct Report {
        public let directory: String
        public let gguf: GGUFExporter.Report
        public let format: String
    }

    /// Writes DIR/model.gguf and DIR/Modelfile.
    @discardableResult
    public static func export(modelPath: String, adapter: String?, to directory: String, type: GGUFFileType = .f16,
                              overwrite: Bool = false) throws -> Report {
        try ModelMerger.checkOutput(directory, overwrite: overwrite)
        let lm = try LanguageModel(path: modelPath, adapter: adapter)
        guard let template = lm.template else {
            throw FormatError(modelPath, "has no chat template; Ollama needs one for its TEMPLATE")
        }
        let format = try chatFormat(template)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let opened = try ModelLoader.open(modelPath)
        let gguf = try GGUFExporter.export(model: lm.model, opened: opened, sourcePath: modelPath, adapter: adapter,
                                           to: directory + "/model.gguf", type: type)
        try modelfile(ggufName: "model.gguf", format: format).write(toFile: directory + "/Modelfile", atomically: true, encoding: .utf8)
        return Report(directory: directory, gguf: gguf, format: format.name)
    }
}
