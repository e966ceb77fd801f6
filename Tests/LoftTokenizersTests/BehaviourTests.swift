import Foundation
import XCTest
import LoftFormats
@testable import LoftTokenizers

/// Streaming, metadata and error behaviour. Streaming is checked against `decode`,
/// which the conformance tests check against Hugging Face.
final class TokenizerBehaviourTests: XCTestCase {
    func smol() throws -> Tokenizer {
        try SharedTokenizers.smol()
    }

    func corpus() throws -> [String] {
        try TokenizerConformanceTests.fixture("smollm2").cases.map(\.text)
    }

    /// After every id, the streamed text is exactly decode(prefix) without its trailing
    /// incomplete character; it never contains U+FFFD; at the end it is the whole text.
    /// With byte fallback, `decode` of a prefix turns a whole pending byte run into U+FFFDs, so
    /// there (`exact: false`) the streamed text must only lie between that and the final text.
    func checkStreaming(_ tok: Tokenizer, exact: Bool = true, file: StaticString = #filePath, line: UInt = #line) throws {
        var checkedSplit = 0
        for text in try corpus() where !text.unicodeScalars.contains("\u{FFFD}") {
            let ids = tok.encode(text, addSpecialTokens: false)
            let final = tok.decode(ids)
            let s = StreamingDetokenizer(tokenizer: tok)
            var acc = ""
            for k in 0..<ids.count {
                let piece = s.add(ids[k])
                XCTAssertFalse(piece.unicodeScalars.contains("\u{FFFD}"), "broken UTF-8 emitted for \(text.debugDescription)", file: file, line: line)
                acc += piece
                var want = tok.decode(Array(ids[...k])).unicodeScalars
                var stripped = false
                while want.last == "\u{FFFD}" { want.removeLast(); stripped = true }
                if stripped { checkedSplit += 1 }
                if exact {
                    XCTAssertTrue(acc.unicodeScalars.elementsEqual(want), "\(text.debugDescription) after \(k + 1) ids: \(acc.debugDescription) vs \(String(want).debugDescription)", file: file, line: line)
                } else {
                    XCTAssertTrue(final.unicodeScalars.starts(with: acc.unicodeScalars) && acc.unicodeScalars.starts(with: want),
                                  "\(text.debugDescription) after \(k + 1) ids: \(acc.debugDescription)", file: file, line: line)
                }
            }
            acc += s.finish()
            XCTAssertTrue(acc.unicodeScalars.elementsEqual(tok.decode(ids).unicodeScalars), file: file, line: line)
        }
        XCTAssertGreaterThan(checkedSplit, 10, "the corpus should split characters across ids", file: file, line: line)
    }

    func testStreamingByteLevelNeverEmitsBrokenUTF8() throws { try checkStreaming(try smol()) }

    func testStreamingByteFallbackNeverEmitsBrokenUTF8() throws {
        try checkStreaming(try SharedTokenizers.sentencepiece("mistral-v1"), exact: false)
    }

    func testGGUFMetadata() throws {
        let t = try smol()
        XCTAssertEqual(t.vocabularySize, 49152)
        XCTAssertEqual(t.bosTokenID, 1); XCTAssertEqual(t.bosToken, "<|im_start|>")
        XCTAssertEqual(t.eosTokenID, 2); XCTAssertEqual(t.eosToken, "<|im_end|>")
        XCTAssertEqual(t.padTokenID, 2)
        XCTAssertEqual(t.unkToken, "<|endoftext|>")
        XCTAssertTrue(t.chatTemplate?.contains("<|im_start|>") ?? false)
        XCTAssertEqual(t.tokenToID("<|im_end|>"), 2)
        XCTAssertEqual(t.idToToken(1), "<|im_start|>")
        XCTAssertNil(t.idToToken(49152)); XCTAssertNil(t.idToToken(-1))
        XCTAssertTrue(t.isSpecial(0)); XCTAssertFalse(t.isSpecial(100))
        // Unknown ids are skipped, never a crash.
        XCTAssertEqual(t.decode([-5, 1_000_000]), "")
        XCTAssertEqual(t.encode(""), [])
    }

    func testTiktokenSpecialTokens() throws {
        let shared = SharedTokenizers.self
        let l = try shared.tiktoken("llama3")
        XCTAssertEqual(l.vocabularySize, 128256)
        XCTAssertEqual(l.bosTokenID, 128000); XCTAssertEqual(l.tokenToID("<|eot_id|>"), 128009)
        XCTAssertEqual(l.encode("hi").first, 128000)
        let q = try shared.tiktoken("qwen")
        XCTAssertEqual(q.tokenToID("<|im_start|>"), 151644); XCTAssertEqual(q.tokenToID("<|file_sep|>"), 151664)
        XCTAssertFalse(q.isSpecial(q.tokenToID("<tool_call>")!))
        let g = try shared.tiktoken("gpt2")
        XCTAssertEqual(g.tokenToID("<|endoftext|>"), 50256); XCTAssertEqual(g.vocabularySize, 50257)
    }

    func testBatchAndOffsetsAgree() throws {
        let t = try smol()
        let texts = ["Hello world", "日本語 😀", "", "<|im_start|>user\nhi<|im_end|>"]
        let batch = t.encodeBatch(texts)
        let withOffsets = t.encodeBatchWithOffsets(texts)
        for (i, s) in texts.enumerated() {
            XCTAssertEqual(batch[i], t.encode(s))
            XCTAssertEqual(withOffsets[i].ids, batch[i])
            XCTAssertEqual(withOffsets[i].offsets.count, batch[i].count)
        }
    }

    /// Random strings from a mixed pool: byte-level tokenizers give back exactly the input,
    /// and random ids (in and out of range) decode without crashing.
    func testRandomTextRoundTripsAndRandomIDsDecode() throws {
        var rng = SystemRandomNumberGenerator()
        let pool = Array("aZ09 \t\n\r'sS’.,!?-_<|>/\\\"éü\u{301}\u{308}日本語한글العربيةשלום😀👍🏽\u{200D}👨🇺🇸\u{00A0}\u{3000}½²①".unicodeScalars)
        let toks = [try SharedTokenizers.smol(), try SharedTokenizers.tiktoken("gpt2"), try SharedTokenizers.tiktoken("llama3")]
        for _ in 0..<300 {
            var v = String.UnicodeScalarView()
            for _ in 0..<Int.random(in: 0...40, using: &rng) { v.append(pool.randomElement(using: &rng)!) }
            let text = String(v)
            for t in toks {
                let back = t.decode(t.encode(text, addSpecialTokens: false))
                XCTAssertTrue(back.unicodeScalars.elementsEqual(text.unicodeScalars), "\(t.source): \(text.debugDescription) -> \(back.debugDescription)")
            }
        }
        let sp = try SharedTokenizers.sentencepiece("mistral-v3")
        for t in toks + [sp] {
            let ids = (0..<200).map { _ in Int.random(in: -10...(t.vocabularySize + 10), using: &rng) }
            _ = t.decode(ids)
            _ = t.decode(ids, skipSpecialTokens: true)
            let s = StreamingDetokenizer(tokenizer: t)
            for id in ids { _ = s.add(id) }
            _ = s.finish()
        }
    }

    func testConcurrentEncodeMatchesSequential() throws {
        let t = try Tokenizer.load(source: TestPaths.smolLM2)  // fresh cache
        let texts = try corpus()
        var results = [[Int]](repeating: [], count: texts.count)
        let lock = NSLock()
        DispatchQueue.concurrentPerform(iterations: texts.count) { i in
            let ids = t.encode(texts[i])
            lock.lock(); results[i] = ids; lock.unlock()
        }
        for (i, s) in texts.enumerated() { XCTAssertEqual(results[i], t.encode(s), s.debugDescription) }
        XCTAssertEqual(t.encodeBatch(texts, parallel: true), texts.map { t.encode($0) })
    }

    // MARK: Errors name the file and what is wrong

    func tempFile(_ name: String, _ bytes: [UInt8]) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("loft-tok-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let p = dir.appendingPathComponent(name).path
        try Data(bytes).write(to: URL(fileURLWithPath: p))
        return p
    }

    func assertFormatError(_ path: String, family: String? = nil, mentions: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try Tokenizer.load(source: path, family: family), file: file, line: line) { e in
            guard let fe = e as? FormatError else { return XCTFail("not a FormatError: \(e)", file: file, line: line) }
            XCTAssertEqual(fe.file, path, file: file, line: line)
            XCTAssertTrue(fe.message.contains(mentions), "\(fe.message) should mention \(mentions)", file: file, line: line)
        }
    }

    func testMissingFile() { assertFormatError("/nonexistent/tokenizer.json", mentions: "no such file") }

    func testGGUFWithoutTokenizer() throws {
        // A valid GGUF v3 with one string key and no tokenizer metadata.
        var b = [UInt8]("GGUF".utf8)
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { b += $0 } }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { b += $0 } }
        func str(_ s: String) { u64(UInt64(s.utf8.count)); b += Array(s.utf8) }
        u32(3); u64(0); u64(1)
        str("general.architecture"); u32(8); str("llama")
        let p = try tempFile("empty.gguf", b)
        assertFormatError(p, mentions: "tokenizer.ggml.model")
    }

    func testTruncatedSentencePiece() throws {
        let data = try Data(contentsOf: TestPaths.shared.appendingPathComponent("tokenizers/mistral-v1.sentencepiece.model"))
        let p = try tempFile("broken.model", Array(data.prefix(1001)))
        assertFormatError(p, mentions: "protobuf")
    }

    func testBadTiktoken() throws {
        let p = try tempFile("x.tiktoken", Array("IQ== 0\nnot base64!! x\n".utf8))
        assertFormatError(p, family: "gpt2", mentions: "line 2")
        let q = try tempFile("ranks.tiktoken", Array("IQ== 0\n".utf8))
        assertFormatError(q, mentions: "family")
        assertFormatError(q, family: "llama9", mentions: "llama9")
        assertFormatError(try tempFile("big.tiktoken", Array("IQ== 99999999999\n".utf8)), family: "gpt2", mentions: "out of range")
    }

    func testBadTokenizerJSON() throws {
        assertFormatError(try tempFile("tokenizer.json", Array("{not json".utf8)), mentions: "not a JSON object")
        assertFormatError(try tempFile("tokenizer.json", Array(#"{"model": {"type": "WordPiece", "vocab": {}}}"#.utf8)), mentions: "WordPiece")
        let unsupported = #"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "\\w+"}, "behavior": "Isolated", "invert": false}}"#
        assertFormatError(try tempFile("tokenizer.json", Array(unsupported.utf8)), mentions: "Split")
        assertFormatError(try tempFile("tokenizer.json", Array(#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [3]}}"#.utf8)), mentions: "merges[0]")
        assertFormatError(try tempFile("tokenizer.json", Array(#"{"model": {"type": "BPE", "vocab": {"a": 99999999999}, "merges": []}}"#.utf8)), mentions: "model.vocab")
        assertFormatError(try tempFile("tokenizer.json", Array(#"{"model": {"type": "BPE", "vocab": {"a": 0}}, "added_tokens": [{"content": "x", "id": -3}]}"#.utf8)), mentions: "added_tokens[0]")
        assertFormatError(try tempFile("tokenizer.json", Array(#"{"model": {"type": "BPE", "vocab": {"a": 0}}, "decoder": {"type": "CTC"}}"#.utf8)), mentions: "CTC")
    }
}
