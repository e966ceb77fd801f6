import Foundation
import XCTest
@testable import LoftData

/// Rows that used to pass silently (a message without content became an empty
/// turn) are bad rows with file, row, field, reason and fix; skipping counts
/// them by reason.
final class StrictRowTests: XCTestCase {
    func fixture(_ name: String) -> String { TestPaths.fixtures.appendingPathComponent(name).path }

    func testAMessageWithoutContentStopsTheBuildNamingRowAndField() throws {
        let b = try DatasetBuilder(tokenizer: Shared.tokenizer, options: DataOptions(sequenceLen: 512))
        XCTAssertThrowsError(try b.build([DatasetSpec(path: fixture("strict_rows.jsonl"))])) { e in
            guard let d = e as? DataError else { return XCTFail("\(e)") }
            XCTAssertEqual(d.row, 2)
            XCTAssertEqual(d.field, "messages[0].content")
            XCTAssertEqual(d.reason, .missingContent)
            XCTAssertTrue(d.description.contains("strict_rows.jsonl, row 2, field `messages[0].content`: the message has no `content`"), d.description)
            XCTAssertTrue(d.description.contains("skip_bad_rows"), d.description)
        }
    }

    func testSkippingCountsEveryBadRowByReason() throws {
        var o = DataOptions(sequenceLen: 512)
        o.skipBadRows = true
        let built = try DatasetBuilder(tokenizer: Shared.tokenizer, options: o).build([DatasetSpec(path: fixture("strict_rows.jsonl"))])
        // Rows 1, 8 (an assistant tool call with null content is fine) and 9 (typed text parts) are good.
        XCTAssertEqual(built.trainOrigins.map(\.row), [1, 8, 9])
        let s = built.stats[0]
        XCTAssertEqual(s.rows, 10)
        XCTAssertEqual(s.badRows, 7)
        let byReason = Dictionary(uniqueKeysWithValues: s.badRowReasons.map { ($0.reason, $0.rows.map(\.row)) })
        XCTAssertEqual(byReason[.missingContent], [2, 3, 10])
        XCTAssertEqual(byReason[.nonStringContent], [4])
        XCTAssertEqual(byReason[.unknownRole], [5])
        XCTAssertEqual(byReason[.emptyConversation], [6])
        XCTAssertEqual(byReason[.noTrainableTurn], [7])
        XCTAssertEqual(s.badRowReasons.map(\.count).reduce(0, +), 7)
        XCTAssertTrue(s.badRowReasons.first { $0.reason == .missingContent }!.first.contains("row 2"))
        XCTAssertTrue(s.badRowSummary.contains("3 rows: missing_content (rows 2, 3, 10)"), s.badRowSummary)
        let null = s.badRowReasons.first { $0.reason == .missingContent }!
        XCTAssertEqual(null.rows.first?.file, fixture("strict_rows.jsonl"))
    }

    func testScanWithoutATokenizerFindsTheSameBadRows() throws {
        let s = try DatasetBuilder.scan(DatasetSpec(path: fixture("strict_rows.jsonl")))
        XCTAssertEqual(s.badRows, 7)
        XCTAssertEqual(s.examples, 3)
        XCTAssertEqual(Set(s.badRowReasons.map(\.reason)),
                       [.missingContent, .nonStringContent, .unknownRole, .emptyConversation, .noTrainableTurn])
        // train_on_inputs trains the user turn of row 7: no longer bad.
        var o = DataOptions()
        o.trainOnInputs = true
        XCTAssertEqual(try DatasetBuilder.scan(DatasetSpec(path: fixture("strict_rows.jsonl")), options: o).badRows, 6)
        // A role map names the narrator.
        let mapped = try DatasetBuilder.scan(DatasetSpec(path: fixture("strict_rows.jsonl"), roleMap: ["narrator": "user"]))
        XCTAssertEqual(mapped.badRows, 6)
    }

    func testPreferenceRowsNeedBothAnswersAndKTOABooleanLabel() throws {
        let p = try DatasetBuilder.scan(DatasetSpec(path: fixture("strict_preference.jsonl")))
        XCTAssertEqual(p.format, "dpo")
        XCTAssertEqual(p.badRowReasons.map(\.reason), [.missingPreferencePair])
        XCTAssertEqual(p.badRowReasons[0].rows.map(\.row), [2, 3])
        XCTAssertTrue(p.badRowErrors[0].contains("row 2, field `rejected`: the preference row has no `rejected`"), p.badRowErrors[0])
        let k = try DatasetBuilder.scan(DatasetSpec(path: fixture("strict_kto.jsonl")))
        XCTAssertEqual(k.format, "kto")
        XCTAssertEqual(k.badRowReasons.map(\.reason), [.ktoLabelNotBoolean])
        XCTAssertEqual(k.badRowReasons[0].rows.map(\.row), [2, 3])
        XCTAssertTrue(k.badRowErrors[0].contains("row 2, field `label`: the KTO label is a string (\"false\"), not true or false"), k.badRowErrors[0])
    }

    /// The CLI: `loft data check` fails on the bad rows and passes with --skip-bad-rows.
    func testDataCheckExitsNonZeroUnlessSkipping() throws {
        let loft = TestPaths.repoRoot.appendingPathComponent(".build/release/loft").path
        guard FileManager.default.isExecutableFile(atPath: loft) else { throw XCTSkip("no release build of loft at \(loft)") }
        func run(_ args: [String]) throws -> (Int32, String) {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: loft)
            p.arguments = args
            let pipe = Pipe()
            p.standardOutput = pipe
            p.standardError = pipe
            try p.run()
            let out = pipe.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            return (p.terminationStatus, String(decoding: out, as: UTF8.self))
        }
        let (bad, text) = try run(["data", "check", fixture("strict_rows.jsonl")])
        XCTAssertNotEqual(bad, 0, text)
        XCTAssertTrue(text.contains("row 2, field `messages[0].content`: the message has no `content`"), text)
        let (jsonStatus, json) = try run(["data", "check", "--json", fixture("strict_rows.jsonl")])
        XCTAssertNotEqual(jsonStatus, 0)
        let obj = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
        let reasons = ((obj?["datasets"] as? [[String: Any]])?.first?["bad_rows_by_reason"] as? [[String: Any]]) ?? []
        let missing = reasons.first { $0["reason"] as? String == "missing_content" }
        XCTAssertEqual(missing?["count"] as? Int, 3, json)
        XCTAssertEqual((missing?["rows"] as? [[String: Any]])?.compactMap { $0["row"] as? Int }, [2, 3, 10], json)
        let (ok, okText) = try run(["data", "check", "--skip-bad-rows", fixture("strict_rows.jsonl")])
        XCTAssertEqual(ok, 0, okText)
    }
}
