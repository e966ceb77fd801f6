import Foundation
import XCTest
@testable import LoftTemplates

/// Prefill renders (`continue_final_message=True`) of every real template,
/// compared with transformers (Fixtures/continue_cases.json).
final class ContinueFinalMessageTests: XCTestCase {
    func testPrefillRendersMatchTransformers() throws {
        let fixture = try FixtureSupport.load("continue_cases.json")
        guard let conversations = fixture["conversations"], let cases = fixture["cases"]?.arrayValue else {
            return XCTFail("continue_cases.json has no cases")
        }
        XCTAssertGreaterThan(cases.count, 60)
        var failures: [String] = []
        for c in cases {
            guard let file = c["template"]?.stringValue, let conv = c["conversation"]?.stringValue,
                  let messages = conversations[conv]?["messages"]?.arrayValue else { return XCTFail("malformed case") }
            let source = try String(contentsOf: TestPaths.fixtures.appendingPathComponent("templates/\(file)"), encoding: .utf8)
            let result = Result { () throws -> String in
                let t = try ChatTemplate(source, bosToken: c["bos_token"]?.stringValue, eosToken: c["eos_token"]?.stringValue)
                t.now = { FixtureSupport.fixedNow }
                return try t.renderContinuingFinalMessage(messages: messages)
            }
            switch (result, c["expected"]?.stringValue) {
            case (.success(let text), let expected?) where text != expected:
                failures.append("\(file)/\(conv): \(FixtureSupport.firstDifference(expected: expected, actual: text))")
            case (.failure(let error), _?):
                failures.append("\(file)/\(conv): threw \(error)")
            case (.success, nil):
                failures.append("\(file)/\(conv): rendered, but transformers fails with \(c["error"]?.stringValue ?? "?")")
            default:
                break
            }
        }
        for f in failures { print("MISMATCH " + f) }
        XCTAssertEqual(failures, [])
    }
}
