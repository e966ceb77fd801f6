import Foundation
import XCTest
@testable import LoftServer

final class ToolCallTests: XCTestCase {
    let names: Set<String> = ["get_weather", "add"]

    func testHermesCallsAfterContent() throws {
        let text = "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"C\"}}\n</tool_call>\n<tool_call>{\"name\": \"add\", \"arguments\": {\"a\": 1}}</tool_call>"
        let p = try XCTUnwrap(ToolCallParser.parse(text, functionNames: names))
        XCTAssertEqual(p.content, "Let me check.")
        XCTAssertEqual(p.calls.map(\.name), ["get_weather", "add"])
        XCTAssertEqual(p.calls[0].arguments, "{\"city\": \"Paris\", \"unit\": \"C\"}", "key order kept")
        XCTAssertTrue(p.calls[0].id.hasPrefix("call_"))
        // an unclosed call at the end (generation stopped on EOS) still counts
        XCTAssertEqual(ToolCallParser.parse("<tool_call>{\"name\": \"add\", \"arguments\": {}}", functionNames: names)?.calls.count, 1)
    }

    func testLlamaAndMistralFormats() throws {
        let llama = try XCTUnwrap(ToolCallParser.parse("<|python_tag|>{\"name\": \"add\", \"parameters\": {\"a\": 1, \"b\": 2}}", functionNames: names))
        XCTAssertEqual(llama.calls.first?.arguments, "{\"a\": 1, \"b\": 2}")
        let two = try XCTUnwrap(ToolCallParser.parse("{\"name\": \"add\", \"parameters\": {\"s\": \"x;y\"}}; {\"name\": \"get_weather\", \"parameters\": {}}", functionNames: names))
        XCTAssertEqual(two.calls.map(\.name), ["add", "get_weather"])
        let mistral = try XCTUnwrap(ToolCallParser.parse("[TOOL_CALLS][{\"name\": \"add\", \"arguments\": {\"a\": 1}}]", functionNames: names))
        XCTAssertEqual(mistral.calls.first?.name, "add")
    }

    func testTextThatIsNoCall() {
        XCTAssertNil(ToolCallParser.parse("The weather is nice.", functionNames: names))
        XCTAssertNil(ToolCallParser.parse("{\"name\": \"rm_rf\", \"parameters\": {}}", functionNames: names), "only offered functions")
        XCTAssertNil(ToolCallParser.parse("{\"answer\": 1}", functionNames: names))
        XCTAssertNil(ToolCallParser.parse("<tool_call>not json</tool_call>", functionNames: names))
    }

    func testStreamFilterHoldsOnlyWhatMayBeACall() {
        var f = ToolCallStreamFilter(functionNames: names)
        XCTAssertEqual(f.feed("Sure"), "Sure")
        XCTAssertEqual(f.feed(", checking <tool"), ", checking ")
        XCTAssertEqual(f.feed("_call>{\"name\": \"add\", \"arguments\": {}}</tool_call>"), "")
        let end = f.finish()
        XCTAssertEqual(end.text, "")
        XCTAssertEqual(end.calls.map(\.name), ["add"])

        var g = ToolCallStreamFilter(functionNames: names)
        XCTAssertEqual(g.feed(" {"), "")
        XCTAssertEqual(g.feed("\"a\": 1}"), "")
        let gEnd = g.finish()
        XCTAssertEqual(gEnd.text, " {\"a\": 1}", "not a call: released as text")
        XCTAssertTrue(gEnd.calls.isEmpty)
    }

    static let tools = "[{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Weather in a city\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}}}]"

    func testToolCallsOverHTTP() async throws {
        try await withServer { client, engine in
            let r = try await client.call(.post, "/v1/chat/completions", chatBody(nil, "TOOL weather in Paris?", extra: ", \"tools\": \(Self.tools)"))
            XCTAssertEqual(r.status, 200, r.text)
            let choice = (r.json["choices"] as? [[String: Any]])?.first ?? [:]
            XCTAssertEqual(choice["finish_reason"] as? String, "tool_calls")
            let message = choice["message"] as? [String: Any] ?? [:]
            XCTAssertTrue(message["content"] is NSNull)
            let call = (message["tool_calls"] as? [[String: Any]])?.first ?? [:]
            XCTAssertEqual(call["type"] as? String, "function")
            XCTAssertEqual((call["function"] as? [String: Any])?["name"] as? String, "get_weather")
            XCTAssertEqual((call["function"] as? [String: Any])?["arguments"] as? String, "{\"city\": \"Paris\"}")
            let rendered = engine.detokenize(engine.lastRequest?.prompt ?? [])
            XCTAssertTrue(rendered.hasPrefix("<tools>[{\"type\": \"function\""), "tools reach the template: \(rendered)")

            let s = try await client.call(.post, "/v1/chat/completions", chatBody(nil, "TOOL weather?", extra: ", \"tools\": \(Self.tools), \"stream\": true"))
            let chunks = s.events.dropLast().map { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any] ?? [:] }
            let choices = chunks.compactMap { ($0["choices"] as? [[String: Any]])?.first }
            XCTAssertFalse(choices.contains { (($0["delta"] as? [String: Any])?["content"] as? String ?? "").contains("tool_call") }, "the call's text is not streamed as content")
            let calls = choices.compactMap { ($0["delta"] as? [String: Any])?["tool_calls"] as? [[String: Any]] }.flatMap { $0 }
            XCTAssertEqual(calls.first?["index"] as? Int, 0)
            XCTAssertEqual((calls.first?["function"] as? [String: Any])?["name"] as? String, "get_weather")
            XCTAssertEqual(choices.last?["finish_reason"] as? String, "tool_calls")

            // tool_choice none: no tools rendered, text comes back as content
            let none = try await client.call(.post, "/v1/chat/completions", chatBody(nil, "TOOL", extra: ", \"tools\": \(Self.tools), \"tool_choice\": \"none\""))
            XCTAssertNotNil(((none.json["choices"] as? [[String: Any]])?.first?["message"] as? [String: Any])?["content"] as? String)
            // a named function: its parameters' schema constrains the output, which becomes the arguments
            let named = try await client.call(.post, "/v1/chat/completions", chatBody(nil, "weather?", extra: ", \"tools\": \(Self.tools), \"tool_choice\": {\"type\": \"function\", \"function\": {\"name\": \"get_weather\"}}"))
            guard case .jsonSchema(let schema)? = engine.lastRequest?.constraint else { return XCTFail("no schema constraint") }
            XCTAssertTrue(schema.contains("\"city\""))
            let namedCall = (((named.json["choices"] as? [[String: Any]])?.first?["message"] as? [String: Any])?["tool_calls"] as? [[String: Any]])?.first
            XCTAssertEqual((namedCall?["function"] as? [String: Any])?["arguments"] as? String, "{\"answer\": 42}")
        }
    }

    func testAssistantToolCallArgumentsReachTheTemplateAsObjects() throws {
        let messages = try ChatParameters.messages(try JSONReaderValue(
            "[{\"role\": \"assistant\", \"content\": null, \"tool_calls\": [{\"id\": \"c1\", \"type\": \"function\", \"function\": {\"name\": \"add\", \"arguments\": \"{\\\"a\\\": 1}\"}}]}, {\"role\": \"tool\", \"tool_call_id\": \"c1\", \"content\": \"2\"}]"))
        XCTAssertTrue(messages[0].jsonText().contains("\"arguments\": {\"a\": 1}"), messages[0].jsonText())
    }
}

import LoftTemplates
func JSONReaderValue(_ s: String) throws -> JinjaValue { try JSONReader.parse(s) }
