import Foundation
import XCTest
@testable import LoftTokenizers

/// Loft's hand-written regex matchers against `tokenizers`' Split(Regex, "isolated") (onig):
/// piece boundaries for every corpus string, per family pattern (tools/make_tokenizer_fixtures.py).
final class SplitPatternTests: XCTestCase {
    struct Fixture: Decodable {
        let strings: [String]
        let patterns: [String: String]
        let lengths: [String: [[Int]]]
    }

    func testMatchersCutWhereOnigCuts() throws {
        let url = TestPaths.fixtures.appendingPathComponent("tokenizers/pretokenize.json")
        let fx = try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
        XCTAssertEqual(Set(fx.patterns.keys), ["gpt2", "llama3", "qwen2", "qwen35", "o200k", "tekken"])
        for (name, regex) in fx.patterns.sorted(by: { $0.key < $1.key }) {
            // The matcher is chosen from the exact regex text, as a tokenizer.json names it.
            guard let pattern = SplitPattern(regex: regex) else { XCTFail("\(name): regex not recognized"); continue }
            var failures = 0
            for (s, want) in zip(fx.strings, fx.lengths[name]!) {
                let chars = scalars(of: s)
                var ends = [Int]()
                chars.withUnsafeBufferPointer { pattern.split($0, 0, chars.count, into: &ends) }
                var got = [Int]()
                var start = 0
                for e in ends { got.append(e - start); start = e }
                if got != want {
                    failures += 1
                    if failures <= 5 { XCTFail("\(name): \(s.debugDescription) cut into \(got), onig: \(want)") }
                }
            }
            XCTAssertEqual(failures, 0, "\(name): \(failures) strings cut differently")
        }
    }
}
