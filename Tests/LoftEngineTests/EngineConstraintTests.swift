import Foundation
import XCTest
@testable import LoftEngine
import LoftTestSupport

final class EngineConstraintTests: XCTestCase {
    /// A vocabulary of single bytes, for driving the automaton directly.
    static let bytes = VocabularyIndex(size: 256) { [UInt8($0)] }

    func grammar(_ c: OutputConstraint) throws -> JSONGrammar { try JSONConstraintCompiler.compile(c, vocabulary: Self.bytes)! }

    func accepts(_ g: JSONGrammar, _ text: String) -> Bool {
        guard let s = g.feed(g.start(), Array(text.utf8)) else { return false }
        return g.isComplete(s) || g.canEnd(s)
    }

    func testJSONObjectGrammar() throws {
        let g = try grammar(.jsonObject)
        for ok in [#"{}"#, #"{"a": 1}"#, #"{"a": [1, 2.5e-3, -0, "x\"y\u00e9"], "b": {"c": null, "d": true}}"#, "{\n  \"k\": false\n}"] {
            XCTAssertTrue(accepts(g, ok), ok)
        }
        for bad in [#"[]"#, #"{"a" 1}"#, #"{"a": 01}"#, #"{"a": tru}"#, #"{"a": 1,}"#, #" {}"#, #"{"a": "x"}}"#, #"{"a": 1."#, "{\"a\": \"\u{1}\"}"] {
            XCTAssertFalse(accepts(g, bad), bad)
        }
        XCTAssertNil(g.feed(g.start(), Array("{} ".utf8)), "nothing after the document")
    }

    static let person = """
    {"type": "object", "title": "Person",
     "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
                    "colour": {"enum": ["red", "green", 3]}, "tags": {"type": "array", "items": {"type": "string"}},
                    "spouse": {"type": ["string", "null"]}},
     "required": ["name", "age", "colour"], "additionalProperties": false}
    """

    func testSchemaGrammar() throws {
        let g = try grammar(.jsonSchema(Self.person))
        XCTAssertTrue(accepts(g, #"{"name": "Ann", "age": 31, "colour": "red"}"#))
        XCTAssertTrue(accepts(g, #"{"colour": 3, "age": -2, "name": "", "tags": ["a", "b"], "spouse": null}"#))
        for bad in [#"{"name": "Ann", "age": 31}"#,                       // colour required
                    #"{"name": "Ann", "age": 3.5, "colour": "red"}"#,      // integer
                    #"{"name": "Ann", "age": 1, "colour": "blue"}"#,       // enum
                    #"{"name": "Ann", "age": 1, "colour": "red", "x": 1}"#, // additionalProperties
                    #"{"name": "A", "name": "B", "age": 1, "colour": 3}"#,  // duplicate key
                    #"{"name": 5, "age": 1, "colour": 3}"#,
                    #"{"name": "A", "age": 1, "colour": 3, "tags": [1]}"#] {
            XCTAssertFalse(accepts(g, bad), bad)
        }
        // A name the schema lists is written as it is: no escape may start
        // in it (none could finish it, and sampling would reach a dead end).
        XCTAssertNil(g.feed(g.start(), Array(#"{"name": "A", "s\"#.utf8)))
        XCTAssertNotNil(g.feed(g.start(), Array(#"{"name": "A\n", "sp"#.utf8)))
    }

    func testUnsupportedKeywordsAreRefusedByName() {
        for (schema, keyword) in [(#"{"type": "string", "pattern": "^a"}"#, "pattern"),
                                  (#"{"anyOf": [{"type": "string"}]}"#, "anyOf"),
                                  (##"{"type": "object", "properties": {"a": {"$ref": "#/x"}}}"##, "$ref"),
                                  (#"{"type": "integer", "minimum": 0}"#, "minimum")] {
            XCTAssertThrowsError(try JSONConstraintCompiler.compile(.jsonSchema(schema), vocabulary: Self.bytes)) { error in
                guard case EngineError.invalidRequest(let field, let message) = error else { return XCTFail("\(error)") }
                XCTAssertEqual(field, "response_format.json_schema")
                XCTAssertTrue(message.contains("`\(keyword)`"), message)
            }
        }
        XCTAssertThrowsError(try JSONConstraintCompiler.compile(.jsonSchema(#"{"required": ["x"], "properties": {}}"#), vocabulary: Self.bytes))
        XCTAssertThrowsError(try JSONConstraintCompiler.compile(.jsonSchema("{not json"), vocabulary: Self.bytes))
    }

    /// Random sampling at temperature 1 on the real model and vocabulary:
    /// every finished output parses and satisfies the schema.
    func testConstrainedSamplingAlwaysValidates() throws {
        let engine = try BatchEngine(path: SharedTestPaths.smolLM2, configuration: EngineConfiguration(maxBatch: 8, contextLength: 512))
        defer { engine.shutdown() }
        let prompt = try engine.render(ChatPrompt(messagesJSON: #"[{"role": "user", "content": "Describe a person as JSON with name, age and colour."}]"#), model: nil).tokens
        let seed = UInt64.random(in: 0 ... 1 << 40)
        var requests: [GenerationRequest] = []
        for i in 0 ..< 4 {
            requests.append(GenerationRequest(prompt: prompt, maxTokens: 120, sampling: SamplingParameters(temperature: 1, seed: seed + UInt64(i)),
                                              constraint: .jsonSchema(Self.person)))
            requests.append(GenerationRequest(prompt: prompt, maxTokens: 120, sampling: SamplingParameters(temperature: 1, seed: seed + 100 + UInt64(i)),
                                              constraint: .jsonObject))
        }
        let results = try engine.generate(requests)
        var finished = 0
        let person = try JSONConstraintCompiler.compile(.jsonSchema(Self.person), vocabulary: engine.vocabularyIndex)!
        let object = try JSONConstraintCompiler.compile(.jsonObject, vocabulary: engine.vocabularyIndex)!
        for (r, result) in zip(requests, results) {
            let choice = result.choices[0]
            let text = choice.text
            // Every output, finished or cut by max_tokens, is a prefix its grammar accepts.
            let g = r.constraint == .jsonObject ? object : person
            XCTAssertNotNil(g.feed(g.start(), Array(text.utf8)), "seed \(seed): \(text)")
            guard choice.finishReason == .stop else { continue }
            finished += 1
            let parsed = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], "seed \(seed): \(text)")
            if r.constraint != .jsonObject {
                XCTAssertTrue(parsed["name"] is String, text)
                XCTAssertNotNil(parsed["age"] as? Int, text)
                XCTAssertEqual(Set(parsed.keys).subtracting(["name", "age", "colour", "tags", "spouse"]), [], text)
                let colour = parsed["colour"]
                XCTAssertTrue((colour as? String).map { ["red", "green"].contains($0) } ?? ((colour as? Int) == 3), text)
            }
        }
        XCTAssertGreaterThanOrEqual(finished, 4, "seed \(seed): most constrained outputs should complete within 120 tokens")
    }
}
