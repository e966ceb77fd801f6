import Foundation
import XCTest
@testable import LoftTemplates

/// Assistant spans found by prefix rendering, checked against the turn layout
/// each template family is known to produce (content, then its end-of-turn text).
final class AssistantSpanTests: XCTestCase {
    private func template(_ file: String, bos: String? = nil, eos: String? = nil) throws -> ChatTemplate {
        let url = TestPaths.fixtures.appendingPathComponent("templates/\(file)")
        let t = try ChatTemplate(try String(contentsOf: url, encoding: .utf8), bosToken: bos, eosToken: eos)
        t.now = { FixtureSupport.fixedNow }
        return t
    }

    private func conversation(_ name: String) throws -> [JinjaValue] {
        let fixture = try FixtureSupport.load("template_cases.json")
        return fixture["conversations"]?[name]?["messages"]?.arrayValue ?? []
    }

    private func slice(_ text: String, _ r: Range<Int>) -> String {
        PyString.make(Array(text.unicodeScalars)[r])
    }

    private func check(_ file: String, _ conv: String, endOfTurn: String, nextHeader: String?, bos: String? = nil, eos: String? = nil,
                       extra: [String: JinjaValue] = [:], trims: Bool = false, line: UInt = #line) throws {
        let messages = try conversation(conv)
        let rendered = try template(file, bos: bos, eos: eos).renderWithAssistantSpans(messages: messages, extra: extra)
        let assistants = messages.indices.filter { messages[$0]["role"]?.stringValue == "assistant" }
        XCTAssertEqual(rendered.spans.map(\.messageIndex), assistants, line: line)
        for span in rendered.spans {
            var content = messages[span.messageIndex]["content"]?.stringValue ?? ""
            if trims { content = PyString.strip(content, nil, leading: true, trailing: true) }
            XCTAssertEqual(slice(rendered.text, span.content), content, "\(file) content", line: line)
            XCTAssertEqual(slice(rendered.text, span.turn), content + endOfTurn, "\(file) turn", line: line)
            XCTAssertEqual(span.completion.upperBound, span.turn.upperBound, line: line)
            XCTAssertLessThanOrEqual(span.completion.lowerBound, span.content.lowerBound, line: line)
            if let nextHeader, span.turn.upperBound < rendered.text.unicodeScalars.count {
                XCTAssertTrue(slice(rendered.text, span.turn.upperBound..<rendered.text.unicodeScalars.count).hasPrefix(nextHeader),
                              "\(file): next message should start at the end of the turn", line: line)
            }
        }
    }

    func testChatMLTurnsEndWithImEnd() throws {
        try check("HuggingFaceTB-SmolLM2-135M-Instruct.jinja", "multi_turn", endOfTurn: "<|im_end|>\n", nextHeader: "<|im_start|>user")
        try check("Qwen-Qwen2.5-7B-Instruct.jinja", "system_multi_turn", endOfTurn: "<|im_end|>\n", nextHeader: "<|im_start|>user")
    }

    func testLlama3TurnsEndWithEotId() throws {
        try check("meta-llama-Llama-3.1-8B-Instruct.jinja", "multi_turn", endOfTurn: "<|eot_id|>",
                  nextHeader: "<|start_header_id|>user", bos: "<|begin_of_text|>", eos: "<|eot_id|>")
    }

    func testMistralAndLlama2TurnsEndWithEos() throws {
        try check("mistralai-v1-Mistral-7B-Instruct-v0.2.jinja", "multi_turn", endOfTurn: "</s>", nextHeader: " [INST]", bos: "<s>", eos: "</s>")
        try check("meta-llama-Llama-2-7b-chat-hf.jinja", "multi_turn", endOfTurn: " </s>", nextHeader: "<s>[INST]", bos: "<s>", eos: "</s>")
    }

    func testTemplatesThatTrimContent() throws {
        try check("google-gemma-2-2b-it.jinja", "unicode_whitespace", endOfTurn: "<end_of_turn>\n", nextHeader: nil,
                  bos: "<bos>", eos: "<eos>", trims: true)
    }

    func testReasoningIsInTheCompletionButNotTheContent() throws {
        let messages = try conversation("reasoning")
        let rendered = try template("Qwen-Qwen3-0.6B.jinja").renderWithAssistantSpans(messages: messages)
        guard let last = rendered.spans.last else { return XCTFail("no spans") }
        XCTAssertEqual(slice(rendered.text, last.content), "68")
        XCTAssertEqual(slice(rendered.text, last.turn), "68<|im_end|>\n")
        XCTAssertEqual(slice(rendered.text, last.completion), "<think>\n17 * 4 = 68.\n</think>\n\n68<|im_end|>\n")
    }

    func testHistoryTurnsInQwen3AreFoundThoughTheLastTurnRendersDifferently() throws {
        // Qwen3 draws an empty think block only on the final assistant turn, so the
        // render of a shorter conversation differs from the full one at that message.
        try check("Qwen-Qwen3-0.6B.jinja", "multi_turn", endOfTurn: "<|im_end|>\n", nextHeader: "<|im_start|>user")
    }

    /// Every real template, every conversation it renders: spans are ordered, do not
    /// overlap, and the content range holds the message content (trimmed if the template trims).
    func testSpansAcrossAllTemplatesHoldTheContent() throws {
        let fixture = try FixtureSupport.load("template_cases.json")
        guard let cases = fixture["cases"]?.arrayValue, let conversations = fixture["conversations"] else { return XCTFail() }
        var problems: [String] = []
        var checked = 0
        for c in cases where c["expected"] != nil && c["add_generation_prompt"] == .bool(false) && c["extra"] == .object(JinjaObject()) {
            guard let file = c["template"]?.stringValue, let conv = c["conversation"]?.stringValue,
                  let messages = conversations[conv]?["messages"]?.arrayValue,
                  messages.contains(where: { $0["role"]?.stringValue == "assistant" }) else { continue }
            let t = try template(file, bos: c["bos_token"]?.stringValue, eos: c["eos_token"]?.stringValue)
            let rendered: RenderedConversation
            do {
                rendered = try t.renderWithAssistantSpans(messages: messages, tools: conversations[conv]?["tools"]?.arrayValue)
            } catch {
                problems.append("\(file)/\(conv): \(error)")
                continue
            }
            XCTAssertEqual(rendered.text, c["expected"]?.stringValue, "\(file)/\(conv)")
            var previousEnd = 0
            for span in rendered.spans {
                checked += 1
                let content = messages[span.messageIndex]["content"]?.stringValue ?? ""
                let found = slice(rendered.text, span.content)
                let ok = span.completion.lowerBound >= previousEnd && span.completion.lowerBound <= span.content.lowerBound
                    && span.content.upperBound <= span.turn.upperBound && span.turn.upperBound <= span.completion.upperBound
                    && (found == content || found == PyString.strip(content, nil, leading: true, trailing: true) || content.isEmpty
                        // Templates that keep only the answer after `</think>` show a tail of the content.
                        || (!found.isEmpty && content.hasSuffix(found) && content.contains("</think>"))
                        // Tool-call turns: many templates print the calls instead of the content.
                        || (found.isEmpty && messages[span.messageIndex]["tool_calls"] != nil)
                        // YandexGPT leaves the final assistant message out of the render: an empty span is right.
                        || (PyString.find(rendered.text, content) == nil && span.content.isEmpty))
                if !ok { problems.append("\(file)/\(conv) message \(span.messageIndex): content \(span.content) turn \(span.turn) completion \(span.completion) found \(found.debugDescription)") }
                previousEnd = span.completion.upperBound
            }
        }
        XCTAssertGreaterThan(checked, 60)
        for p in problems { print("SPAN " + p) }
        XCTAssertEqual(problems, [])
    }

    func testGenerationBlocksGiveTheCompletion() throws {
        let source = """
        {%- for m in messages %}<|im_start|>{{ m.role }}
        {% if m.role == 'assistant' %}{% generation %}{{ m.content }}<|im_end|>{% endgeneration %}{% else %}{{ m.content }}<|im_end|>{% endif %}

        {% endfor %}{% if add_generation_prompt %}<|im_start|>assistant
        {% endif %}
        """
        let t = try ChatTemplate(source)
        XCTAssertTrue(t.hasGenerationBlocks)
        let messages = try conversation("multi_turn")
        let rendered = try t.renderWithAssistantSpans(messages: messages)
        XCTAssertEqual(rendered.spans.count, 2)
        for span in rendered.spans {
            let content = messages[span.messageIndex]["content"]?.stringValue ?? ""
            XCTAssertEqual(slice(rendered.text, span.completion), content + "<|im_end|>")
            XCTAssertEqual(slice(rendered.text, span.content), content)
        }
    }

    func testUTF8RangesCountBytes() throws {
        let messages: [JinjaValue] = [["role": "user", "content": "é🤖"], ["role": "assistant", "content": "ü"]]
        let rendered = try template("HuggingFaceTB-SmolLM2-135M-Instruct.jinja").renderWithAssistantSpans(messages: messages)
        guard let span = rendered.spans.first else { return XCTFail("no span") }
        let bytes = rendered.utf8Range(span.content)
        let utf8 = Array(rendered.text.utf8)
        XCTAssertEqual(String(decoding: utf8[bytes], as: UTF8.self), "ü")
        XCTAssertEqual(bytes.count, 2)
    }
}
