import Foundation
import XCTest
import LoftFormats
@testable import LoftTokenizers

/// Ids, decoded text and offsets against Hugging Face `tokenizers`, from fixtures
/// written by tools/make_tokenizer_fixtures.py (see that script for how each
/// reference tokenizer was built).
final class TokenizerConformanceTests: XCTestCase {
    struct Case: Decodable {
        let text: String
        let ids: [Int]
        let ids_no_special: [Int]
        let decode: String
        let decode_skip_special: String
        let offsets: [[Int]]?
    }
    struct Fixture: Decodable { let tokenizer: String; let vocab_size: Int; let cases: [Case] }

    static func fixture(_ name: String) throws -> Fixture {
        let url = TestPaths.fixtures.appendingPathComponent("tokenizers/\(name).json")
        return try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
    }

    func tiktoken(_ family: String) throws -> Tokenizer { try SharedTokenizers.tiktoken(family) }
    func sentencepiece(_ name: String) throws -> Tokenizer { try SharedTokenizers.sentencepiece(name) }
    func smol() throws -> Tokenizer { try SharedTokenizers.smol() }
    func tinyJSON(_ name: String) throws -> Tokenizer { try SharedTokenizers.tinyJSON(name) }

    /// Compares everything; `lossless`: decode(encode(s)) == s is expected for all strings.
    func check(_ tok: Tokenizer, _ name: String, lossless: Bool, normalizes: Bool = false, file: StaticString = #filePath, line: UInt = #line) throws {
        try Self.check(tok, name, lossless: lossless, normalizes: normalizes, file: file, line: line)
    }

    static func check(_ tok: Tokenizer, _ name: String, lossless: Bool, normalizes: Bool = false, file: StaticString = #filePath, line: UInt = #line) throws {
        let fx = try fixture(name)
        XCTAssertGreaterThanOrEqual(fx.cases.count, 200, file: file, line: line)
        XCTAssertEqual(tok.vocabularySize, fx.vocab_size, "vocabulary size", file: file, line: line)
        var failures = 0
        func fail(_ msg: String) {
            failures += 1
            if failures <= 12 { XCTFail("\(name): \(msg)", file: file, line: line) }
        }
        var offsetCases = 0
        for c in fx.cases {
            let ids = tok.encode(c.text)
            if ids != c.ids { fail("ids for \(c.text.debugDescription)\n got \(ids)\nwant \(c.ids)") }
            let raw = tok.encode(c.text, addSpecialTokens: false)
            if raw != c.ids_no_special { fail("ids (no special) for \(c.text.debugDescription)\n got \(raw)\nwant \(c.ids_no_special)") }
            let d = tok.decode(c.ids)
            if d != c.decode { fail("decode of \(c.text.debugDescription): got \(d.debugDescription), want \(c.decode.debugDescription)") }
            let ds = tok.decode(c.ids, skipSpecialTokens: true)
            if ds != c.decode_skip_special { fail("decode(skip) of \(c.text.debugDescription): got \(ds.debugDescription), want \(c.decode_skip_special.debugDescription)") }
            if lossless && tok.decode(raw) != c.text { fail("round trip of \(c.text.debugDescription): \(tok.decode(raw).debugDescription)") }
            // Streaming gives the same text as decode.
            let stream = StreamingDetokenizer(tokenizer: tok)
            var streamed = ""
            for id in raw {
                let piece = stream.add(id)
                streamed += piece
            }
            streamed += stream.finish()
            if streamed != tok.decode(raw) { fail("streaming of \(c.text.debugDescription): \(streamed.debugDescription) vs \(tok.decode(raw).debugDescription)") }
            // Where a Unicode normalizer rewrites the text, `tokenizers` aligns offsets by its own
            // diff and Loft by chunk; ids still match, offsets there are only approximate.
            let chars = scalars(of: c.text)
            let rewritten = normalizes && tok.normalizer.map { Self.unicodeFormChanges($0, chars) } ?? false
            if let want = c.offsets, !rewritten {
                offsetCases += 1
                let got = tok.encodeWithOffsets(c.text, addSpecialTokens: false)
                XCTAssertEqual(got.ids, c.ids_no_special, file: file, line: line)
                let gotPairs = got.offsets.map { [$0.lowerBound, $0.upperBound] }
                if gotPairs != want { fail("offsets for \(c.text.debugDescription)\n got \(gotPairs)\nwant \(want)") }
            }
        }
        XCTAssertGreaterThan(offsetCases, 20, file: file, line: line)
        XCTAssertEqual(failures, 0, "\(name): \(failures) mismatches", file: file, line: line)
    }

    /// Whether a Unicode normalization form inside `n` rewrites `chars`.
    static func unicodeFormChanges(_ n: Normalizer, _ chars: [UInt32]) -> Bool {
        switch n {
        case .nfc, .nfd, .nfkc, .nfkd: return n.apply(AlignedText(chars: chars, base: 0)).chars != chars
        case .sequence(let l): return l.contains { unicodeFormChanges($0, chars) }
        default: return false
        }
    }

    func testSmolLM2FromGGUFMatchesHF() throws { try check(try smol(), "smollm2", lossless: true) }
    /// Gemma 3's 262 144-piece SentencePiece vocabulary from its GGUF (no space prefix, byte fallback).
    func testGemma3FromGGUFMatchesHF() throws {
        try check(try SharedTokenizers.load("gemma3") { try Tokenizer(gguf: GGUFFile(path: TestPaths.gemma3)) }, "gemma3", lossless: false)
    }
    func testLlama3TiktokenMatchesHF() throws { try check(try tiktoken("llama3"), "llama3", lossless: true) }
    func testQwenTiktokenMatchesHF() throws { try check(try tiktoken("qwen"), "qwen", lossless: false, normalizes: true) }
    func testGPT2TiktokenMatchesHF() throws { try check(try tiktoken("gpt2"), "gpt2", lossless: true) }
    func testMistralV1SentencePieceMatchesHF() throws { try check(try sentencepiece("mistral-v1"), "mistral-v1", lossless: false) }
    /// tokenizer.json features: ByteLevel(add_prefix_space), NFKC, BOS+EOS template, added tokens with
    /// lstrip / rstrip / single_word / normalized.
    func testTinyByteLevelTokenizerJSONMatchesHF() throws {
        let t = try tinyJSON("tiny-bytelevel")
        try check(t, "tiny-bytelevel", lossless: false, normalizes: true)
        XCTAssertEqual(t.bosToken, "<bos>"); XCTAssertEqual(t.eosToken, "<eos>"); XCTAssertEqual(t.padToken, "<pad>")
        XCTAssertEqual(t.bosTokenID, t.tokenToID("<bos>")); XCTAssertNotNil(t.bosTokenID)
        XCTAssertEqual(t.chatTemplate, "{% for m in messages %}{{ m['content'] }}<eos>{% endfor %}")
    }
    /// Digits + Metaspace(always, split), Replace + Lowercase normalizers, unk with fuse_unk, Metaspace decoder.
    func testTinyMetaspaceTokenizerJSONMatchesHF() throws {
        try check(try tinyJSON("tiny-metaspace"), "tiny-metaspace", lossless: false, normalizes: true)
    }
    /// NFD + Replace + Prepend normalizers, no pre-tokenizer, no post-processor (BOS not added).
    func testTinyLegacySentencePieceTokenizerJSONMatchesHF() throws {
        let t = try tinyJSON("tiny-legacy-spm")
        try check(t, "tiny-legacy-spm", lossless: false, normalizes: true)
    }

    /// Split regexes of o200k (GPT-4o / Llama 4), Tekken (Mistral Nemo) and Qwen3.5 before byte-level BPE.
    func testTinyO200kSplitMatchesHF() throws { try check(try tinyJSON("tiny-o200k"), "tiny-o200k", lossless: true) }
    func testTinyTekkenSplitMatchesHF() throws { try check(try tinyJSON("tiny-tekken"), "tiny-tekken", lossless: true) }
    func testTinyQwen35SplitMatchesHF() throws { try check(try tinyJSON("tiny-qwen35"), "tiny-qwen35", lossless: true) }

    func testMistralV3SentencePieceMatchesHF() throws { try check(try sentencepiece("mistral-v3"), "mistral-v3", lossless: false) }
}

/// Tokenizers loaded once for all test classes (loading a tiktoken file builds its merges).
enum SharedTokenizers {
    nonisolated(unsafe) static var cache: [String: Tokenizer] = [:]
    static func load(_ key: String, _ make: () throws -> Tokenizer) throws -> Tokenizer {
        if let t = cache[key] { return t }
        let t = try make()
        cache[key] = t
        return t
    }
    static func tiktoken(_ family: String) throws -> Tokenizer {
        try load(family) { try Tokenizer.load(source: TestPaths.shared.appendingPathComponent("tokenizers/\(family).tiktoken").path, family: family) }
    }
    static func sentencepiece(_ name: String) throws -> Tokenizer {
        try load(name) { try Tokenizer.load(source: TestPaths.shared.appendingPathComponent("tokenizers/\(name).sentencepiece.model").path) }
    }
    static func smol() throws -> Tokenizer { try load("smollm2") { try Tokenizer(gguf: GGUFFile(path: TestPaths.smolLM2)) } }
    static func tinyJSON(_ name: String) throws -> Tokenizer {
        try load(name) { try Tokenizer.load(source: TestPaths.fixtures.appendingPathComponent("tokenizers/\(name)").path) }
    }
}
