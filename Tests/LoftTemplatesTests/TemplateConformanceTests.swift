import Foundation
import XCTest
@testable import LoftTemplates

/// Real chat templates (Fixtures/templates) rendered for many conversations and
/// options, compared string-for-string with transformers' `render_jinja_template`
/// (expected outputs written by tools/make_template_fixtures.py).
final class TemplateConformanceTests: XCTestCase {
    func testRealTemplatesMatchTransformers() throws {
        let fixture = try FixtureSupport.load("template_cases.json")
        guard let conversations = fixture["conversations"], let cases = fixture["cases"]?.arrayValue else {
            return XCTFail("template_cases.json has no cases")
        }
        XCTAssertGreaterThan(cases.count, 300)
        var templates: [String: ChatTemplate] = [:]
        var failures: [String] = []
        var templatesSeen = Set<String>()
        for c in cases {
            guard let file = c["template"]?.stringValue, let convName = c["conversation"]?.stringValue,
                  let conversation = conversations[convName], let messages = conversation["messages"]?.arrayValue
            else { return XCTFail("malformed case \(c)") }
            templatesSeen.insert(file)
            let label = "\(file) / \(convName) / agp=\(c["add_generation_prompt"] == .bool(true)) / extra=\(c["extra"].map { "\($0)" } ?? "")"
            let template: ChatTemplate
            if let t = templates[file] {
                template = t
            } else {
                let source = try String(contentsOf: TestPaths.fixtures.appendingPathComponent("templates/\(file)"), encoding: .utf8)
                do {
                    template = try ChatTemplate(source)
                } catch {
                    failures.append("\(file): does not parse: \(error)")
                    continue
                }
                template.now = { FixtureSupport.fixedNow }
                templates[file] = template
            }
            template.bosToken = c["bos_token"]?.stringValue
            template.eosToken = c["eos_token"]?.stringValue
            var extra: [String: JinjaValue] = [:]
            if case .object(let o)? = c["extra"] { for (k, v) in o.pairs { extra[k] = v } }
            let result = Result {
                try template.render(messages: messages, tools: conversation["tools"]?.arrayValue,
                                    addGenerationPrompt: c["add_generation_prompt"] == .bool(true), extra: extra)
            }
            if let expected = c["expected"]?.stringValue {
                switch result {
                case .success(let text) where text == expected: break
                case .success(let text):
                    failures.append("\(label): \(FixtureSupport.firstDifference(expected: expected, actual: text))")
                case .failure(let error):
                    failures.append("\(label): threw \(error)")
                }
            } else if let message = c["error"]?.stringValue {
                switch result {
                case .success:
                    failures.append("\(label): rendered, but transformers fails with: \(message)")
                case .failure(let error):
                    if c["error_kind"]?.stringValue == "raise", error as? TemplateError != .raised(message: message) {
                        failures.append("\(label): expected raise_exception(\(message)), got \(error)")
                    }
                }
            }
        }
        XCTAssertGreaterThanOrEqual(templatesSeen.count, 16)
        for f in failures.prefix(15) { print("MISMATCH " + f) }
        XCTAssertEqual(failures.count, 0, "\(failures.count) of \(cases.count) cases differ from transformers; first: \(failures.first ?? "")")
    }
}
