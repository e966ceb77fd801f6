import Foundation
import LoftTemplates
import LoftTokenizers
import XCTest
@testable import LoftData

final class ReaderTests: XCTestCase {
    func fixture(_ name: String) -> String { TestPaths.fixtures.appendingPathComponent(name).path }

    func builder(_ configure: (inout DataOptions) -> Void = { _ in }) throws -> DatasetBuilder {
        var o = DataOptions(sequenceLen: 4096)
        configure(&o)
        return try DatasetBuilder(tokenizer: Shared.tokenizer, options: o)
    }

    /// The same rows as JSONL, JSON (object of arrays), CSV (quoted commas, quotes and a newline)
    /// and gzip-compressed JSONL, written by Python's csv/json/gzip modules, give the same examples.
    func testEveryLayoutGivesTheSameExamples() throws {
        let b = try builder()
        let reference = try b.build([DatasetSpec(path: fixture("formats/alpaca.jsonl"))])
        XCTAssertEqual(reference.train.count, 3)
        for name in ["formats/alpaca.json", "formats/alpaca.csv", "formats/alpaca.jsonl.gz"] {
            let other = try b.build([DatasetSpec(path: fixture(name))])
            XCTAssertEqual(other.train, reference.train, name)
            XCTAssertEqual(other.hash, reference.hash, name)
        }
        // The TSV holds rows 1 and 3.
        let tsv = try b.build([DatasetSpec(path: fixture("formats/alpaca.tsv"))])
        XCTAssertEqual(tsv.train, [reference.train[0], reference.train[2]])
        // The text of row 2 survives CSV quoting.
        let text = Shared.tokenizer.decode(reference.train[1].ids.map(Int.init))
        XCTAssertTrue(text.contains("Red\nOrange"), text)
    }

    func testDirectoriesAndGlobs() throws {
        let files = try expandDatasetPath(fixture("formats"))
        XCTAssertEqual(files.map { ($0 as NSString).lastPathComponent },
                       ["alpaca.csv", "alpaca.json", "alpaca.jsonl", "alpaca.jsonl.gz", "alpaca.tsv", "notes.txt"])
        let glob = try expandDatasetPath(fixture("formats") + "/alpaca.js*")
        XCTAssertEqual(glob.map { ($0 as NSString).lastPathComponent }, ["alpaca.json", "alpaca.jsonl", "alpaca.jsonl.gz"])
        let b = try builder()
        let built = try b.build([DatasetSpec(path: fixture("formats") + "/alpaca.js*")])
        XCTAssertEqual(built.train.count, 9)
        XCTAssertThrowsError(try expandDatasetPath(fixture("formats") + "/nothing*.jsonl")) { e in
            XCTAssertTrue("\(e)".contains("matches no dataset file"), "\(e)")
        }
    }

    func testPlainTextLines() throws {
        let b = try builder()
        let built = try b.build([DatasetSpec(path: fixture("formats/notes.txt"))])
        XCTAssertEqual(built.train.count, 2)
        XCTAssertEqual(built.trainOrigins.map(\.row), [1, 3])
        let tok = Shared.tokenizer
        let expected = tok.encode("First line of text.", addSpecialTokens: false).map(Int32.init) + [Int32(tok.eosTokenID!)]
        XCTAssertEqual(built.train[0].ids, expected)
        XCTAssertEqual(built.train[0].labels, expected, "raw text: every token trained, EOS appended")
    }

    func testABrokenParquetFileSaysWhatIsWrong() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("loftdata-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let p = dir.appendingPathComponent("train.parquet").path
        FileManager.default.createFile(atPath: p, contents: Data("PAR1".utf8))
        XCTAssertThrowsError(try builder().build([DatasetSpec(path: p)])) { e in
            let s = "\(e)"
            XCTAssertTrue(s.contains("train.parquet") && s.contains("not a readable Parquet file") && s.contains("4 bytes long"), s)
        }
    }

    func testStreamingReaderReadsLinesAcrossChunks() throws {
        // Lines longer than the 1 MiB read chunk, and a last line without a newline.
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("loftdata-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let p = dir.appendingPathComponent("big.jsonl").path
        let long = String(repeating: "abcdefgh", count: 300_000)
        let text = "{\"text\": \"\(long)\"}\r\n{\"text\": \"b\"}\n\n{\"text\": \"c\"}"
        try text.write(toFile: p, atomically: true, encoding: .utf8)
        let r = try RowReader(path: p)
        var rows: [RawRow] = []
        while let x = try r.next() { rows.append(try x.get()) }
        XCTAssertEqual(rows.map(\.row), [1, 2, 4])
        XCTAssertEqual(rows[0].value["text"]?.stringValue?.count, long.count)
        XCTAssertEqual(rows[2].value["text"]?.stringValue, "c")
    }

    /// `split: train[a:b]` on a local file reads only those rows (Hugging Face's slice syntax).
    func testSplitSliceReadsOnlyThoseRows() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("loftdata-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let n = Int.random(in: 8 ... 40)
        for (name, text) in [("rows.jsonl", (0 ..< n).map { "{\"text\": \"\($0)\"}" }.joined(separator: "\n")),
                             ("rows.json", "[" + (0 ..< n).map { "{\"text\": \"\($0)\"}" }.joined(separator: ", ") + "]")] {
            let p = dir.appendingPathComponent(name).path
            try text.write(toFile: p, atomically: true, encoding: .utf8)
            let cut = Int.random(in: 1 ..< n)
            for (split, want) in [("train[:\(cut)]", Array(0 ..< cut)), ("train[\(cut):]", Array(cut ..< n)),
                                  ("[1:3]", [1, 2]), ("train", Array(0 ..< n))] {
                let spec = DatasetSpec(path: p, split: split)
                let r = try RowReader(path: p)
                r.rows = try spec.rowSlice()
                var got: [Int] = []
                while let x = try r.next() { got.append(Int(try x.get().value["text"]!.stringValue!)!) }
                XCTAssertEqual(got, want, "\(name) \(split)")
            }
        }
        for bad in ["train[:90%]", "train[-5:]", "train[3:3]", "train[a:b]"] {
            XCTAssertThrowsError(try DatasetSpec(path: "x.jsonl", split: bad).rowSlice(), bad)
        }
        XCTAssertEqual(DatasetSpec(path: "org/name", split: "train[:10]").splitName, "train")
    }
}

final class FormatTests: XCTestCase {
    func detect(_ name: String) throws -> DataFormat {
        let r = try RowReader(path: Shared.dataset(name))
        var rows: [RawRow] = []
        while rows.count < 5, let x = try r.next() { rows.append(try x.get()) }
        return try FormatDetector.detect(rows, fields: Fields(map: [:]), file: name)
    }

    func testDetectsEverySharedDataset() throws {
        XCTAssertEqual(try detect("identity.json"), .alpaca)
        XCTAssertEqual(try detect("alpaca_en_demo.json"), .alpaca)
        XCTAssertEqual(try detect("v1_sft_demo.jsonl"), .messages)
        XCTAssertEqual(try detect("glaive_toolcall_en_demo.json"), .sharegpt)
        XCTAssertEqual(try detect("dpo_en_demo.json"), .preference)
        XCTAssertEqual(try detect("v1_dpo_demo.jsonl"), .preference)
        XCTAssertEqual(try detect("kto_en_demo.json"), .kto)
        XCTAssertEqual(try detect("c4_demo.jsonl"), .text)
    }

    func testTypeNamesFromAxolotl() {
        XCTAssertEqual(DataFormat(typeName: "chat_template"), .messages)
        XCTAssertEqual(DataFormat(typeName: "completion"), .text)
        XCTAssertEqual(DataFormat(typeName: "input_output"), .inputOutput)
        XCTAssertEqual(DataFormat(typeName: "sharegpt"), .sharegpt)
        XCTAssertNil(DataFormat(typeName: "alpacca"))
    }

    func testPreferenceDataIsRefusedWithAReason() throws {
        let b = try DatasetBuilder(tokenizer: Shared.tokenizer, options: DataOptions(sequenceLen: 4096))
        for name in ["dpo_en_demo.json", "v1_dpo_demo.jsonl", "kto_en_demo.json"] {
            XCTAssertThrowsError(try b.build([DatasetSpec(path: Shared.dataset(name))])) { e in
                let s = "\(e)"
                XCTAssertTrue(s.contains("SFT cannot train") && s.contains("rl: ") && s.contains(name), s)
            }
        }
    }

    func testMismatchedTypeNamesRowAndFix() throws {
        let b = try DatasetBuilder(tokenizer: Shared.tokenizer, options: DataOptions(sequenceLen: 4096))
        XCTAssertThrowsError(try b.build([DatasetSpec(path: Shared.dataset("v1_sft_demo.jsonl"), type: "alpaca")])) { e in
            guard let d = e as? DataError else { return XCTFail("\(e)") }
            XCTAssertEqual(d.row, 1)
            XCTAssertTrue(d.description.contains("row 1 has `messages` but the config says `type: alpaca`; set `type: messages` or remove `type`"), d.description)
        }
        XCTAssertThrowsError(try b.build([DatasetSpec(path: Shared.dataset("c4_demo.jsonl"), type: "alpacca")])) { e in
            XCTAssertTrue("\(e)".contains("unknown type `alpacca`"), "\(e)")
        }
    }

    func testAmbiguousFormatIsRefused() throws {
        let b = try DatasetBuilder(tokenizer: Shared.tokenizer, options: DataOptions(sequenceLen: 4096))
        let p = TestPaths.fixtures.appendingPathComponent("ambiguous.jsonl").path
        XCTAssertThrowsError(try b.build([DatasetSpec(path: p)])) { e in
            XCTAssertTrue("\(e)".contains("ambiguous") && "\(e)".contains("set `type:`"), "\(e)")
        }
        XCTAssertEqual(try b.build([DatasetSpec(path: p, type: "messages")]).train.count, 1)
    }

    func testFieldMap() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("loftdata-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let p = dir.appendingPathComponent("qa.jsonl").path
        try "{\"question\": \"Say hi, politely.\", \"answer\": \"Hello, \\\"friend\\\"!\"}\n".write(toFile: p, atomically: true, encoding: .utf8)
        let b = try DatasetBuilder(tokenizer: Shared.tokenizer, options: DataOptions(sequenceLen: 4096))
        XCTAssertThrowsError(try b.build([DatasetSpec(path: p)])) { e in
            XCTAssertTrue("\(e)".contains("field_map"), "\(e)")
        }
        let mapped = try b.build([DatasetSpec(path: p, fieldMap: ["instruction": "question", "output": "answer"])])
        let reference = try b.build([DatasetSpec(path: TestPaths.fixtures.appendingPathComponent("formats/alpaca.jsonl").path)])
        XCTAssertEqual(mapped.train.first, reference.train.first)
    }

    func testVariablesAndUnfilledWarning() throws {
        let b = try DatasetBuilder(tokenizer: Shared.tokenizer, options: DataOptions(sequenceLen: 4096))
        let raw = try b.build([DatasetSpec(path: Shared.dataset("identity.json"))])
        XCTAssertEqual(raw.stats[0].unfilledPlaceholders, ["author", "name"])
        XCTAssertTrue(raw.warnings.contains { $0.contains("{{author}}, {{name}}") && $0.contains("variables:") }, "\(raw.warnings)")
        let filled = try b.build([DatasetSpec(path: Shared.dataset("identity.json"), variables: ["name": "Loft", "author": "us"])])
        XCTAssertEqual(filled.stats[0].unfilledPlaceholders, [])
        XCTAssertTrue(filled.warnings.isEmpty, "\(filled.warnings)")
        XCTAssertTrue(Shared.tokenizer.decode(filled.train[0].ids.map(Int.init)).contains("I am Loft, an AI assistant developed by us."))
    }

    func testSegmentsAndPromptCompletion() throws {
        let tok = Shared.tokenizer
        let b = try DatasetBuilder(tokenizer: tok, options: DataOptions(sequenceLen: 4096))
        let seg = try b.build([DatasetSpec(path: TestPaths.fixtures.appendingPathComponent("segments.jsonl").path)]).train[0]
        let (ids, offsets) = tok.encodeWithOffsets("Q: 2+2?\nA: 4", addSpecialTokens: false)
        XCTAssertEqual(seg.ids, ids.map(Int32.init))
        let boundary = "Q: 2+2?\n".unicodeScalars.count
        XCTAssertEqual(seg.labels, zip(ids, offsets).map { $1.lowerBound >= boundary ? Int32($0) : -100 })
        let pc = try b.build([DatasetSpec(path: TestPaths.fixtures.appendingPathComponent("prompt_completion.jsonl").path)]).train[0]
        let pids = tok.encode("The capital of France is Paris.", addSpecialTokens: false).map(Int32.init) + [Int32(tok.eosTokenID!)]
        XCTAssertEqual(pc.ids, pids)
        // " Paris." and EOS trained; the prompt not.
        let promptCount = tok.encode("The capital of France is", addSpecialTokens: false).count
        XCTAssertEqual(pc.labels, Array(repeating: -100, count: promptCount) + Array(pids[promptCount...]))
    }
}

final class BadInputTests: XCTestCase {
    let badRows = TestPaths.fixtures.appendingPathComponent("bad_rows.jsonl").path

    func testFirstBadRowStopsWithLineNumber() throws {
        let b = try DatasetBuilder(tokenizer: Shared.tokenizer, options: DataOptions(sequenceLen: 4096))
        XCTAssertThrowsError(try b.build([DatasetSpec(path: badRows, type: "alpaca")])) { e in
            guard let d = e as? DataError else { return XCTFail("\(e)") }
            XCTAssertEqual(d.row, 2)
            XCTAssertTrue(d.description.contains("bad_rows.jsonl, row 2: invalid JSON"), d.description)
        }
    }

    func testSkipBadRowsCountsThem() throws {
        var o = DataOptions(sequenceLen: 4096)
        o.skipBadRows = true
        let b = try DatasetBuilder(tokenizer: Shared.tokenizer, options: o)
        let built = try b.build([DatasetSpec(path: badRows, type: "alpaca")])
        XCTAssertEqual(built.trainOrigins.map(\.row), [1, 6])
        XCTAssertEqual(built.stats[0].badRows, 3)
        XCTAssertEqual(built.stats[0].rows, 5)
        let errors = built.stats[0].badRowErrors
        XCTAssertTrue(errors[1].contains("row 4, field `output`: expected a string, found a list"), errors[1])
        XCTAssertTrue(errors[2].contains("row 5 has `messages` but the config says `type: alpaca`"), errors[2])
        XCTAssertTrue(built.warnings.contains { $0.contains("skipped 3 bad rows") })
    }

    func testAllLabelsMaskedIsRefused() throws {
        var o = DataOptions(sequenceLen: 4096)
        o.rolesToTrain = ["nobody"]
        o.maxRows = 20
        let b = try DatasetBuilder(tokenizer: Shared.tokenizer, options: o)
        XCTAssertThrowsError(try b.build([DatasetSpec(path: Shared.dataset("alpaca_en_demo.json"))])) { e in
            // Each row is a conversation with no turn to train on (a bad row naming roles_to_train).
            XCTAssertTrue("\(e)".contains("no turn to train on") && "\(e)".contains("roles_to_train is [nobody]"), "\(e)")
        }
        // Skipped, every row is bad: nothing to train.
        o.skipBadRows = true
        XCTAssertThrowsError(try DatasetBuilder(tokenizer: Shared.tokenizer, options: o).build([DatasetSpec(path: Shared.dataset("alpaca_en_demo.json"))])) { e in
            XCTAssertTrue("\(e)".contains("produced no training examples") && "\(e)".contains("roles_to_train"), "\(e)")
        }
    }

    func testMostlyTruncatedIsRefusedWithARecommendation() throws {
        var o = DataOptions(sequenceLen: 64)
        o.maxRows = 30
        let b = try DatasetBuilder(tokenizer: Shared.tokenizer, options: o)
        XCTAssertThrowsError(try b.build([DatasetSpec(path: Shared.dataset("c4_demo.jsonl"))])) { e in
            XCTAssertTrue("\(e)".contains("sequence_len 64 cuts or drops") && "\(e)".contains("raise sequence_len to about"), "\(e)")
        }
        o.refuseOnProblems = false
        let built = try DatasetBuilder(tokenizer: Shared.tokenizer, options: o).build([DatasetSpec(path: Shared.dataset("c4_demo.jsonl"))])
        XCTAssertEqual(built.problems.count, 1)
        XCTAssertTrue(built.train.allSatisfy { $0.ids.count <= 64 })
        let s = built.stats[0]
        XCTAssertEqual(s.recommendedSequenceLen % 64, 0)
        XCTAssertGreaterThanOrEqual(Double(s.recommendedSequenceLen), Double(s.lengths.p95) * 1.2)
    }

    /// The built-in Gemma turns render as Gemma 3's own template renders string contents
    /// (jinja2 on google/gemma-3-*-it's template gives this text): the system message opens the
    /// first user turn untrimmed, contents are trimmed, the assistant is "model".
    func testBuiltinGemmaTemplate() throws {
        let t = try ChatTemplate(BuiltinTemplate.source(of: "Gemma"), bosToken: "<bos>", eosToken: "<eos>")
        let text = try t.render(messages: [["role": "system", "content": "Be brief."], ["role": "user", "content": " Hi "],
                                           ["role": "assistant", "content": "Hello!"], ["role": "user", "content": "Who are you?"]],
                                addGenerationPrompt: true)
        XCTAssertEqual(text, "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n"
                       + "<start_of_turn>user\nWho are you?<end_of_turn>\n<start_of_turn>model\n")
        XCTAssertEqual(BuiltinTemplate.source(of: "{{ x }}"), "{{ x }}", "Jinja source passes through")
    }

    func testMissingTemplateIsRefused() throws {
        let gpt2 = try Tokenizer.load(source: TestPaths.shared.appendingPathComponent("tokenizers/gpt2.tiktoken").path, family: "gpt2")
        XCTAssertNil(gpt2.chatTemplate)
        let b = try DatasetBuilder(tokenizer: gpt2, options: DataOptions(sequenceLen: 4096))
        XCTAssertThrowsError(try b.build([DatasetSpec(path: TestPaths.fixtures.appendingPathComponent("formats/alpaca.jsonl").path)])) { e in
            XCTAssertTrue("\(e)".contains("no chat template") && "\(e)".contains("chat_template: chatml"), "\(e)")
        }
        // Not skippable as a bad row.
        var skipping = DataOptions(sequenceLen: 4096)
        skipping.skipBadRows = true
        XCTAssertThrowsError(try DatasetBuilder(tokenizer: gpt2, options: skipping).build([DatasetSpec(path: TestPaths.fixtures.appendingPathComponent("formats/alpaca.jsonl").path)])) { e in
            XCTAssertTrue("\(e)".contains("alpaca.jsonl is alpaca data, rendered with a chat template, but the model has no chat template"), "\(e)")
        }
        // Raw text needs no template.
        XCTAssertEqual(try b.build([DatasetSpec(path: TestPaths.fixtures.appendingPathComponent("formats/notes.txt").path)]).train.count, 2)
        XCTAssertThrowsError(try { var o = DataOptions(); o.chatTemplate = "vicuna"; _ = try DatasetBuilder(tokenizer: gpt2, options: o) }()) { e in
            XCTAssertTrue("\(e)".contains("unknown template `vicuna`"), "\(e)")
        }
    }
}
