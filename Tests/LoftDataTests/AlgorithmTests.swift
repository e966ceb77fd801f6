import Foundation
import LoftFormats
import LoftTemplates
import LoftTokenizers
import XCTest
@testable import LoftData

final class TemplateOptionTests: XCTestCase {
    let alpaca = TestPaths.fixtures.appendingPathComponent("formats/alpaca.jsonl").path

    /// A tokenizer that adds BOS (SentencePiece Mistral) with a template that writes
    /// `bos_token` itself (llama2) gets exactly one BOS; with one that does not (chatml), one is added.
    func testNeverADoubleBOS() throws {
        let sp = try Tokenizer.load(source: TestPaths.shared.appendingPathComponent("tokenizers/mistral-v1.sentencepiece.model").path)
        let bos = Int32(try XCTUnwrap(sp.bosTokenID))
        XCTAssertEqual(sp.encode("", addSpecialTokens: true).first.map(Int32.init), bos, "this tokenizer adds BOS")
        for name in ["llama2", "chatml", "alpaca"] {
            var o = DataOptions(sequenceLen: 4096)
            o.chatTemplate = name
            let built = try DatasetBuilder(tokenizer: sp, options: o).build([DatasetSpec(path: alpaca)])
            for ex in built.train {
                XCTAssertEqual(ex.ids.first, bos, name)
                XCTAssertNotEqual(ex.ids[1], bos, "\(name): double BOS")
                XCTAssertEqual(ex.labels.first, -100)
            }
        }
    }

    /// Built-in alpaca template on a base-model tokenizer: the response and the EOS after it are trained, nothing else.
    func testBuiltinAlpacaTrainsResponseAndEOS() throws {
        let sp = try Tokenizer.load(source: TestPaths.shared.appendingPathComponent("tokenizers/mistral-v1.sentencepiece.model").path)
        var o = DataOptions(sequenceLen: 4096)
        o.chatTemplate = "alpaca"
        let ex = try DatasetBuilder(tokenizer: sp, options: o).build([DatasetSpec(path: alpaca)]).train[0]
        let trained = zip(ex.ids, ex.labels).filter { $1 >= 0 }.map { Int($0.0) }
        XCTAssertEqual(trained.last, sp.eosTokenID)
        XCTAssertEqual(sp.decode(Array(trained.dropLast())), "Hello, \"friend\"!")
    }

    /// pad == eos for SmolLM2: the end-of-turn token is still trained.
    func testEndOfTurnTrainedWhenPadIsEOS() throws {
        let tok = Shared.tokenizer
        XCTAssertEqual(tok.padTokenID, tok.eosTokenID)
        let ex = try DatasetBuilder(tokenizer: tok, options: DataOptions(sequenceLen: 4096)).build([DatasetSpec(path: alpaca)]).train[0]
        let eos = Int32(tok.eosTokenID!)
        let positions = ex.ids.indices.filter { ex.ids[$0] == eos }
        XCTAssertEqual(positions.count, 3)  // default system, user, assistant
        XCTAssertEqual(positions.map { ex.labels[$0] }, [-100, -100, eos])
        XCTAssertEqual(ex.labels.last, -100, "the newline after <|im_end|> is not trained")
    }

    func testLastTurnOnly() throws {
        var o = DataOptions(sequenceLen: 8192)
        o.lastTurnOnly = true
        o.maxRows = 1
        let tok = Shared.tokenizer
        let all = try DatasetBuilder(tokenizer: tok, options: { var p = o; p.lastTurnOnly = false; return p }())
            .build([DatasetSpec(path: Shared.dataset("glaive_toolcall_en_demo.json"))]).train[0]
        let last = try DatasetBuilder(tokenizer: tok, options: o).build([DatasetSpec(path: Shared.dataset("glaive_toolcall_en_demo.json"))]).train[0]
        XCTAssertEqual(all.ids, last.ids)
        let eos = Int32(tok.eosTokenID!)
        XCTAssertEqual(all.labels.filter { $0 == eos }.count, 4)  // 4 assistant turns (one a function call)
        XCTAssertEqual(last.labels.filter { $0 == eos }.count, 1)
        // Every label trained in the last-turn-only run is trained in the full run, and they share the end.
        for (a, b) in zip(all.labels, last.labels) where b >= 0 { XCTAssertEqual(a, b) }
        XCTAssertEqual(all.labels.lastIndex(of: eos), last.labels.lastIndex(of: eos))
    }

    /// Chat truncation keeps whole turns: the cut falls right after a trained end-of-turn token.
    func testChatTruncationKeepsWholeTurns() throws {
        let tok = Shared.tokenizer
        var o = DataOptions(sequenceLen: 8192)
        o.maxRows = 10
        let full = try DatasetBuilder(tokenizer: tok, options: o).build([DatasetSpec(path: Shared.dataset("glaive_toolcall_en_demo.json"))])
        o.sequenceLen = 400
        o.refuseOnProblems = false
        let cut = try DatasetBuilder(tokenizer: tok, options: o).build([DatasetSpec(path: Shared.dataset("glaive_toolcall_en_demo.json"))])
        let eos = Int32(tok.eosTokenID!)
        var sawCut = false
        for (k, ex) in cut.train.enumerated() {
            let j = full.trainOrigins.firstIndex(of: cut.trainOrigins[k])!
            let whole = full.train[j]
            XCTAssertLessThanOrEqual(ex.ids.count, 400)
            XCTAssertEqual(Array(whole.ids.prefix(ex.ids.count)), ex.ids)
            XCTAssertEqual(Array(whole.labels.prefix(ex.labels.count)), ex.labels)
            if ex.ids.count < whole.ids.count {
                sawCut = true
                // Ends after "<|im_end|>\n" of a trained turn.
                XCTAssertEqual(ex.ids[ex.ids.count - 2], eos)
                XCTAssertEqual(ex.labels[ex.ids.count - 2], eos)
            }
        }
        XCTAssertTrue(sawCut)
        XCTAssertEqual(cut.stats[0].truncated + cut.stats[0].dropped, full.train.filter { $0.ids.count > 400 }.count)
    }
}

final class AlgorithmTests: XCTestCase {
    /// FIPS 180-4 / NIST test vectors.
    func testSHA256Vectors() {
        XCTAssertEqual(SHA256.hex([]), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(SHA256.hex(Array("abc".utf8)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(SHA256.hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        var h = SHA256()
        let a = [UInt8](repeating: UInt8(ascii: "a"), count: 1000)
        for _ in 0..<1000 { h.update(a) }
        XCTAssertEqual(h.finalize().map { String(format: "%02x", $0) }.joined(),
                       "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    /// Naive best-fit decreasing (scan every bin) as the reference.
    func naiveBFD(_ lengths: [Int], _ cap: Int) -> [[Int]] {
        let order = lengths.indices.sorted { lengths[$0] != lengths[$1] ? lengths[$0] > lengths[$1] : $0 < $1 }
        var bins: [(free: Int, items: [Int])] = []
        for i in order {
            if lengths[i] > cap { bins.append((0, [i])); continue }
            var best: Int? = nil
            for (b, bin) in bins.enumerated() where bin.free >= lengths[i] {
                if best == nil || bin.free < bins[best!].free { best = b }
            }
            if let b = best { bins[b].free -= lengths[i]; bins[b].items.append(i) }
            else { bins.append((cap - lengths[i], [i])) }
        }
        return bins.map(\.items)
    }

    func testBestFitDecreasingMatchesNaive() {
        var rng = SplitMix64(seed: 7)
        for trial in 0..<200 {
            let cap = Int.random(in: 1...300, using: &rng)
            let n = Int.random(in: 0...120, using: &rng)
            let lengths = (0..<n).map { _ in Int.random(in: 1...(cap + 20), using: &rng) }
            let bins = Packing.bestFitDecreasing(lengths: lengths, capacity: cap)
            XCTAssertEqual(bins, naiveBFD(lengths, cap), "trial \(trial)")
            XCTAssertEqual(bins.flatMap { $0 }.sorted(), Array(0..<n))
            for b in bins where b.count > 1 { XCTAssertLessThanOrEqual(b.reduce(0) { $0 + lengths[$1] }, cap) }
        }
        // A known case: optimal 2 bins of 10.
        let bins = Packing.bestFitDecreasing(lengths: [6, 4, 5, 5], capacity: 10)
        XCTAssertEqual(bins, [[0, 1], [2, 3]])
        XCTAssertEqual(Packing.efficiency(lengths: [6, 4, 5, 5], bins: bins, capacity: 10), 1.0)
    }

    func testLengthGroupedBatches() {
        let lengths = (0..<1000).map { ($0 * 7919) % 513 }
        let batches = Packing.lengthGroupedBatches(lengths: lengths, batchSize: 8, seed: 3)
        XCTAssertEqual(batches.flatMap { $0 }.sorted(), Array(0..<1000))
        XCTAssertEqual(batches, Packing.lengthGroupedBatches(lengths: lengths, batchSize: 8, seed: 3))
        // Within a batch lengths are close: mean spread far below the random spread.
        let spread = batches.map { b in b.map { lengths[$0] }.max()! - b.map { lengths[$0] }.min()! }
        XCTAssertLessThan(Double(spread.reduce(0, +)) / Double(spread.count), 60)
    }

    func testValidationSplitAndHash() throws {
        var o = DataOptions(sequenceLen: 4096)
        o.valSetSize = 0.1
        let spec = DatasetSpec(path: Shared.dataset("identity.json"), variables: ["name": "Loft", "author": "us"])
        let a = try DatasetBuilder(tokenizer: Shared.tokenizer, options: o).build([spec])
        XCTAssertEqual(a.validation.count, 9)
        XCTAssertEqual(a.train.count, 82)
        XCTAssertEqual(Set(a.trainOrigins.map(\.row)).union(a.validationOrigins.map(\.row)), Set(1...91))
        let b = try DatasetBuilder(tokenizer: Shared.tokenizer, options: o).build([spec])
        XCTAssertEqual(a.validationOrigins, b.validationOrigins, "same seed, same split")
        XCTAssertEqual(a.hash, b.hash)
        XCTAssertEqual(a.hash.count, 64)
        o.seed = 43
        let c = try DatasetBuilder(tokenizer: Shared.tokenizer, options: o).build([spec])
        XCTAssertNotEqual(a.validationOrigins, c.validationOrigins)
        XCTAssertNotEqual(a.hash, c.hash)
        o.valSetSize = 5
        XCTAssertEqual(try DatasetBuilder(tokenizer: Shared.tokenizer, options: o).build([spec]).validation.count, 5)
        // The hash is SHA-256 of the documented byte layout.
        var bytes: [UInt8] = [UInt8(ascii: "T")]
        func put(_ v: Int32) { let u = UInt32(bitPattern: v); bytes += [UInt8(u & 0xff), UInt8((u >> 8) & 0xff), UInt8((u >> 16) & 0xff), UInt8(u >> 24)] }
        for e in a.train { put(Int32(e.ids.count)); e.ids.forEach(put); e.labels.forEach(put) }
        bytes.append(UInt8(ascii: "V"))
        for e in a.validation { put(Int32(e.ids.count)); e.ids.forEach(put); e.labels.forEach(put) }
        XCTAssertEqual(SHA256.hex(bytes), a.hash)
    }

    func testMixingWithWeights() throws {
        let tok = Shared.tokenizer
        let b = try DatasetBuilder(tokenizer: tok, options: DataOptions(sequenceLen: 4096))
        let id = DatasetSpec(path: Shared.dataset("identity.json"), variables: ["name": "L", "author": "A"], weight: 0.5)
        let notes = DatasetSpec(path: TestPaths.fixtures.appendingPathComponent("formats/notes.txt").path, weight: 2)
        let built = try b.build([id, notes])
        XCTAssertEqual(built.train.count, 46 + 4)
        XCTAssertEqual(built.stats.count, 2)
    }
}

final class ExtraTests: XCTestCase {
    func testPackedMicroBatchesPerEpoch() {
        let lengths = (0..<200).map { 10 + ($0 * 37) % 300 }
        let e0 = Packing.packedMicroBatches(lengths: lengths, capacity: 512, seed: 1, epoch: 0)
        let e1 = Packing.packedMicroBatches(lengths: lengths, capacity: 512, seed: 1, epoch: 1)
        XCTAssertEqual(e0, Packing.packedMicroBatches(lengths: lengths, capacity: 512, seed: 1, epoch: 0))
        XCTAssertNotEqual(e0, e1)
        XCTAssertEqual(Set(e0.map { $0.sorted() }), Set(Packing.bestFitDecreasing(lengths: lengths, capacity: 512).map { $0.sorted() }))
        XCTAssertEqual(Set(e0.map { $0.sorted() }), Set(e1.map { $0.sorted() }))
    }

    /// Tools reach the template, and function calls become structured `tool_calls`
    /// when the template renders them.
    func testToolsAndToolCallsReachTheTemplate() throws {
        let source = "{% for t in tools %}[tool {{ t.name }}]{% endfor %}{% for m in messages %}<{{ m.role }}>"
            + "{% if m.tool_calls %}{% for c in m.tool_calls %}CALL {{ c.function.name }}({{ c.function.arguments | tojson }}){% endfor %}{% else %}{{ m.content }}{% endif %}</s>{% endfor %}"
        let tok = Shared.tokenizer
        let template = try ChatTemplate(source, bosToken: tok.bosToken, eosToken: tok.eosToken)
        var o = DataOptions(sequenceLen: 8192)
        o.maxRows = 1
        let built = try DatasetBuilder(tokenizer: tok, template: template, options: o)
            .build([DatasetSpec(path: Shared.dataset("glaive_toolcall_en_demo.json"))])
        let text = tok.decode(built.train[0].ids.map(Int.init))
        XCTAssertTrue(text.hasPrefix("[tool search_recipes]<user>Hi, I have"), text)
        XCTAssertTrue(text.contains("<assistant>CALL search_recipes({\"ingredients\": [\"chicken\", \"bell peppers\", \"rice\"]})</s><tool>{\"recipes\""), text)
        // The call itself is trained (the assistant produced it).
        let ex = built.train[0]
        let trained = tok.decode(zip(ex.ids, ex.labels).filter { $1 >= 0 }.map { Int($0.0) })
        XCTAssertTrue(trained.contains("CALL search_recipes("), trained)
    }

    func testScanWithoutTokenizer() throws {
        let s = try DatasetBuilder.scan(DatasetSpec(path: TestPaths.fixtures.appendingPathComponent("bad_rows.jsonl").path, type: "alpaca"))
        XCTAssertEqual(s.rows, 5)
        XCTAssertEqual(s.badRows, 3)
        XCTAssertEqual(try DatasetBuilder.scan(DatasetSpec(path: Shared.dataset("kto_en_demo.json"))).format, "kto")
        XCTAssertEqual(try DatasetBuilder.scan(DatasetSpec(path: Shared.dataset("identity.json"))).unfilledPlaceholders, ["author", "name"])
    }
}
