import ArgumentParser
import Foundation
import LoftTemplates
import LoftTokenizers

/// `loft template ...`: chat templates, rendered as transformers renders them.
struct TemplateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "template",
        abstract: "Render chat templates exactly as transformers' apply_chat_template does.",
        subcommands: [TemplateRender.self])
}

struct TemplateRender: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "render",
        abstract: "Render a conversation with a chat template.",
        discussion: """
        SOURCE is a .jinja file, a tokenizer_config.json, or a model directory holding one \
        (a chat_template.jinja there takes precedence). --messages is a JSON file holding a list \
        of messages, or an object with "messages" (and optionally "tools").
        """)

    @Argument(help: "A .jinja file, a tokenizer_config.json, or a model directory.")
    var source: String

    @Option(help: "JSON file with the messages (a list, or {\"messages\": [...], \"tools\": [...]}).")
    var messages: String

    @Option(help: "JSON file with the tools (a list of JSON schemas).")
    var tools: String?

    @Flag(help: "Append the prompt that starts the assistant's reply.")
    var addGenerationPrompt = false

    @Flag(help: "Stop right after the last message's content so a model continues it (a prefill).")
    var continueFinalMessage = false

    @Option(name: .customLong("var"), help: "Extra template variable as NAME=JSON, e.g. enable_thinking=false (repeatable).")
    var variables: [String] = []

    @Option(help: "Which named template to use when the config holds several (default: tool_use when tools are given, else default).")
    var templateName: String?

    @Flag(help: "Also print where each assistant message's content and turn lie in the text.")
    var spans = false

    @Flag(help: "Print JSON instead of plain text.")
    var json = false

    func run() throws {
        do {
            try render()
        } catch let error as TemplateError {
            fail("\(error)")
        } catch let error as JSONReader.ParseError {
            fail("\(error)")
        }
    }

    private func fail(_ message: String) -> Never {
        if json {
            print(JinjaValue.object(JinjaObject([("error", .string(message))])).jsonText())
        } else {
            FileHandle.standardError.write(Data(("error: " + message + "\n").utf8))
        }
        Foundation.exit(1)
    }

    private func readJSON(_ path: String, what: String) throws -> JinjaValue {
        guard let data = FileManager.default.contents(atPath: path) else {
            fail("cannot read the \(what) file \(path)")
        }
        do {
            return try JSONReader.parse(String(decoding: data, as: UTF8.self))
        } catch let e as JSONReader.ParseError {
            fail("\(path): \(e)")
        }
    }

    private func render() throws {
        let input = try readJSON(messages, what: "--messages")
        var messageList: [JinjaValue]
        var toolList: [JinjaValue]?
        switch input {
        case .array(let list): messageList = list
        case .object(let o):
            guard case .array(let list)? = o["messages"] else { fail("\(messages): expected a list of messages or an object with \"messages\"") }
            messageList = list
            toolList = o["tools"]?.arrayValue
        default: fail("\(messages): expected a list of messages or an object with \"messages\"")
        }
        for (i, m) in messageList.enumerated() where m["role"]?.stringValue == nil {
            fail("\(messages): message \(i) has no \"role\" string")
        }
        if let tools {
            guard case .array(let list) = try readJSON(tools, what: "--tools") else { fail("\(tools): expected a list of tools") }
            toolList = list
        }
        let template: ChatTemplate
        if source.lowercased().hasSuffix(".gguf") {
            // The template and its special tokens live in the GGUF's tokenizer metadata.
            let tokenizer = try Tokenizer.load(source: source)
            guard let text = tokenizer.chatTemplate else {
                fail("\(source) has no tokenizer.chat_template; give a .jinja file or a tokenizer_config.json instead")
            }
            template = try ChatTemplate(text, bosToken: tokenizer.bosToken, eosToken: tokenizer.eosToken)
        } else {
            template = try ChatTemplate.load(from: URL(fileURLWithPath: source), name: templateName, forTools: toolList != nil)
        }
        var extra: [String: JinjaValue] = [:]
        for v in variables {
            guard let eq = v.firstIndex(of: "=") else { fail("--var \(v): expected NAME=JSON") }
            let name = String(v[..<eq]), text = String(v[v.index(after: eq)...])
            extra[name] = (try? JSONReader.parse(text)) ?? .string(text)
        }

        if continueFinalMessage && (addGenerationPrompt || spans) {
            fail("--continue-final-message cannot be combined with --add-generation-prompt or --spans")
        }
        if spans {
            let rendered = try template.renderWithAssistantSpans(messages: messageList, tools: toolList, extra: extra)
            if json {
                let spanValues: [JinjaValue] = rendered.spans.map { s in
                    .object(JinjaObject([("message_index", .int(s.messageIndex)),
                                         ("content", .array([.int(s.content.lowerBound), .int(s.content.upperBound)])),
                                         ("turn", .array([.int(s.turn.lowerBound), .int(s.turn.upperBound)])),
                                         ("completion", .array([.int(s.completion.lowerBound), .int(s.completion.upperBound)]))]))
                }
                print(JinjaValue.object(JinjaObject([("text", .string(rendered.text)), ("spans", .array(spanValues)),
                                                     ("offsets", "unicode scalars")])).jsonText(indent: 2))
            } else {
                print(rendered.text, terminator: rendered.text.hasSuffix("\n") ? "" : "\n")
                let scalars = Array(rendered.text.unicodeScalars)
                func show(_ r: Range<Int>) -> String {
                    var v = String.UnicodeScalarView()
                    v.append(contentsOf: scalars[r])
                    return JinjaValue.string(String(v)).jsonText()
                }
                print("--- assistant spans (offsets in Unicode scalars) ---")
                for s in rendered.spans {
                    print("message \(s.messageIndex): content \(s.content.lowerBound)..<\(s.content.upperBound) \(show(s.content))")
                    print("  turn \(s.turn.lowerBound)..<\(s.turn.upperBound) \(show(s.turn))")
                    print("  completion \(s.completion.lowerBound)..<\(s.completion.upperBound)")
                }
            }
            return
        }
        let text = continueFinalMessage
            ? try template.renderContinuingFinalMessage(messages: messageList, tools: toolList, extra: extra)
            : try template.render(messages: messageList, tools: toolList, addGenerationPrompt: addGenerationPrompt, extra: extra)
        if json {
            print(JinjaValue.object(JinjaObject([("text", .string(text))])).jsonText())
        } else {
            print(text, terminator: "")
        }
    }
}
