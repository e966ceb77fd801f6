import Foundation
import LoftFormats
import LoftTemplates
import LoftTokenizers
import XCTest
@testable import LoftData

/// Preference rows of every layout, tokenized as TRL 1.16 does (fixture from
/// tools/make_dpo_fixtures.py: every row of dpo_en_demo.json), and the bad
/// rows TRL only warns about.
final class PreferenceDataTests: XCTestCase {
    func builder(sequenceLen: Int = 100_000, skipBadRows: Bool = false) throws -> PreferenceDatasetBuilder {
        var o = DataOptions(sequenceLen: sequenceLen)
        o.skipBadRows = skipBadRows
        return try PreferenceDatasetBuilder(tokenizer: Shared.tokenizer, options: o)
    }

    func temp(_ lines: [String], ext: String = "jsonl") throws -> String {
        let path = NSTemporaryDirectory() + "loft-pref-\(UUID().uuidString).\(ext)"
        try lines.joined(separator: "\n").write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func hash(_ ids: [Int32]) -> String {
        var h = SHA256()
        h.update(Array(ids.map { String($0) }.joined(separator: ",").utf8))
        return h.finalize().map { String(format: "%02x", $0) }.joined()
    }

    struct TokensFixture: Decodable {
        struct Row: Decodable {
            let row: Int
            let prompt_len: Int, chosen_len: Int, rejected_len: Int
            let prompt_sha256: String, chosen_sha256: String, rejected_sha256: String
            let prompt_ids: [Int32]?, chosen_ids: [Int32]?
        }
        struct Cut: Decodable { let kept_rows: Int; let truncated_rows: [Int] }
        let rows: [Row]
        let max_length_512: Cut
    }

    /// Every row of dpo_en_demo.json: prompt, chosen and rejected ids identical to TRL's.
    func testDPOEnDemoTokenizesAsTRL() throws {
        let fixture = try JSONDecoder().decode(TokensFixture.self, from: Data(contentsOf: TestPaths.fixtures.appendingPathComponent("dpo_en_demo_tokens.json")))
        let (examples, origins, stats) = try builder().buildOne(DatasetSpec(path: Shared.dataset("dpo_en_demo.json")))
        XCTAssertEqual(stats.layout, "sharegpt")
        XCTAssertEqual(examples.count, fixture.rows.count)
        for (e, (o, want)) in zip(examples, zip(origins, fixture.rows)) {
            XCTAssertEqual(o.row, want.row)
            if let p = want.prompt_ids { XCTAssertEqual(e.prompt, p, "row \(want.row) prompt") }
            if let c = want.chosen_ids { XCTAssertEqual(e.chosen, c, "row \(want.row) chosen") }
            XCTAssertEqual([e.prompt.count, e.chosen.count, e.rejected.count], [want.prompt_len, want.chosen_len, want.rejected_len], "row \(want.row) lengths")
            XCTAssertEqual([hash(e.prompt), hash(e.chosen), hash(e.rejected)], [want.prompt_sha256, want.chosen_sha256, want.rejected_sha256], "row \(want.row) ids")
        }
        // sequence_len 512: TRL's filter (prompt fills it) and keep_start truncation.
        let (cut, cutOrigins, cutStats) = try builder(sequenceLen: 512).buildOne(DatasetSpec(path: Shared.dataset("dpo_en_demo.json")))
        XCTAssertEqual(cut.count, fixture.max_length_512.kept_rows)
        XCTAssertEqual(cutStats.truncated, fixture.max_length_512.truncated_rows.count)
        XCTAssertEqual(cutStats.dropped, 300 - fixture.max_length_512.kept_rows)
        for (e, o) in zip(cut, cutOrigins) {
            XCTAssertLessThanOrEqual(e.prompt.count + max(e.chosen.count, e.rejected.count), 512, "row \(o.row)")
        }
    }

    func testOtherSharedLayouts() throws {
        let (pairs, _, s1) = try builder().buildOne(DatasetSpec(path: Shared.dataset("v1_dpo_demo.jsonl")))
        XCTAssertEqual(s1.layout, "chosen_messages")
        XCTAssertEqual(pairs.count, 10)
        let text = Shared.tokenizer.decode(pairs[0].prompt.map(Int.init))
        XCTAssertTrue(text.hasSuffix("<|im_start|>assistant\n"), text)
        XCTAssertTrue(text.contains("Abdulah Hasanagic"), text)
        XCTAssertNotEqual(pairs[0].chosen, pairs[0].rejected)
        let (kto, _, s2) = try builder().buildOne(DatasetSpec(path: Shared.dataset("kto_en_demo.json")))
        XCTAssertEqual(s2.layout, "kto")
        XCTAssertEqual(kto.count, 300)
        XCTAssertTrue(kto.contains { $0.label == true } && kto.contains { $0.label == false })
        XCTAssertTrue(kto.allSatisfy { $0.rejected.isEmpty && !$0.chosen.isEmpty })
    }

    /// Explicit prompts (text or messages), implicit prompts, Axolotl's intel and argilla layouts.
    func testRowLayouts() throws {
        // A file has one layout (detected from its first rows, as for SFT formats): one file each.
        let explicit = try temp([
            #"{"prompt": [{"role": "user", "content": "Sky?"}], "chosen": [{"role": "assistant", "content": "Blue."}], "rejected": [{"role": "assistant", "content": "Green."}]}"#,
            #"{"prompt": [{"role": "user", "content": "Sky?"}], "chosen": "Blue.", "rejected": "Green."}"#,
        ])
        let implicit = try temp([
            #"{"chosen": [{"role": "user", "content": "Sky?"}, {"role": "assistant", "content": "Blue."}], "rejected": [{"role": "user", "content": "Sky?"}, {"role": "assistant", "content": "Green."}]}"#,
        ])
        let (ex, _, _) = try builder().buildOne(DatasetSpec(path: explicit))
        XCTAssertEqual(ex.count, 2)
        XCTAssertEqual(ex[0], ex[1])
        XCTAssertEqual(try builder().buildOne(DatasetSpec(path: implicit)).0, [ex[0]])
        let intel = try temp([#"{"system": "", "question": "Sky?", "chosen": "Blue.", "rejected": "Green."}"#])
        XCTAssertEqual(try builder().buildOne(DatasetSpec(path: intel, type: "chatml.intel")).0, [ex[0]])
        let argilla = try temp([#"{"instruction": "Sky?", "chosen_response": "Blue.", "rejected_response": "Green."}"#])
        XCTAssertEqual(try builder().buildOne(DatasetSpec(path: argilla, type: "llama3.argilla")).0, [ex[0]])
        // Plain text: TRL's standard format, EOS appended to each completion.
        let plain = try temp([#"{"prompt": "The sky is", "chosen": " blue", "rejected": " green"}"#])
        let p = try builder().buildOne(DatasetSpec(path: plain)).0[0]
        XCTAssertEqual(p.chosen.last.map(Int.init), Shared.tokenizer.eosTokenID)
        XCTAssertEqual(Shared.tokenizer.decode((p.prompt + p.rejected).map(Int.init)), "The sky is green" + (Shared.tokenizer.eosToken ?? ""))
    }

    /// A prompt that does not tokenize as a prefix of prompt + completion is a bad row, named, with the fix.
    func testNonPrefixPromptIsABadRow() throws {
        let path = try temp([
            #"{"prompt": "The sky is ", "chosen": "blue", "rejected": "green"}"#,
            #"{"prompt": "Sky", "chosen": " blue", "rejected": " green"}"#,
        ])
        XCTAssertThrowsError(try builder().buildOne(DatasetSpec(path: path))) { e in
            guard let d = e as? DataError else { return XCTFail("\(e)") }
            XCTAssertEqual(d.row, 1)
            XCTAssertTrue(d.description.contains("not a prefix of prompt + chosen") && d.description.contains("token boundary"), d.description)
        }
        let (ex, _, stats) = try builder(skipBadRows: true).buildOne(DatasetSpec(path: path))
        XCTAssertEqual(ex.count, 1)
        XCTAssertEqual(stats.badRows, 1)
    }

    func testUnknownLayoutNamesTheKeys() throws {
        let path = try temp([#"{"question": "Sky?", "answer": "Blue."}"#])
        XCTAssertThrowsError(try builder().buildOne(DatasetSpec(path: path))) { e in
            XCTAssertTrue("\(e)".contains("no preference layout fits"), "\(e)")
        }
    }

    /// max_prompt_len keeps the prompt's end; sequence_len then cuts completions (keep_start) and counts them.
    func testPromptBudgetAndTruncation() throws {
        var o = DataOptions(sequenceLen: 20)
        o.skipBadRows = false
        let b = try PreferenceDatasetBuilder(tokenizer: Shared.tokenizer, options: o)
        b.maxPromptLen = 8
        let path = try temp([#"{"prompt": [{"role": "user", "content": "one two three four five six seven eight nine ten"}], "chosen": "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda", "rejected": "no"}"#])
        let (ex, _, stats) = try b.buildOne(DatasetSpec(path: path))
        XCTAssertEqual(ex[0].prompt.count, 8)
        XCTAssertEqual(stats.promptTruncated, 1)
        XCTAssertEqual(ex[0].prompt.count + ex[0].chosen.count, 20)
        XCTAssertEqual(stats.truncated, 1)
        XCTAssertEqual(Shared.tokenizer.decode(ex[0].prompt.map(Int.init)).hasSuffix("assistant\n"), true)
    }
}
