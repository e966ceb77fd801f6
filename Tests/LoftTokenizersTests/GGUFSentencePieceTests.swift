import Foundation
import XCTest
import LoftFormats
@testable import LoftTokenizers

/// The SentencePiece path of the GGUF loader (`tokenizer.ggml.model = "llama"`): the test writes a
/// GGUF holding mistral-v1's pieces, scores and types, as tools/make_tokenizer_fixtures.py does for
/// the reference (transformers' GGUF tokenizer loader), and compares with that.
final class GGUFSentencePieceTests: XCTestCase {
    /// A minimal GGUF v3 writer: metadata only, no tensors.
    struct Writer {
        var kv = [UInt8]()
        var count = 0
        mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { kv += $0 } }
        mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { kv += $0 } }
        mutating func str(_ s: String) { u64(UInt64(s.utf8.count)); kv += Array(s.utf8) }
        mutating func key(_ k: String, _ type: UInt32) { str(k); u32(type); count += 1 }
        mutating func string(_ k: String, _ v: String) { key(k, 8); str(v) }
        mutating func uint32(_ k: String, _ v: UInt32) { key(k, 4); u32(v) }
        mutating func bool(_ k: String, _ v: Bool) { key(k, 7); kv.append(v ? 1 : 0) }
        mutating func strings(_ k: String, _ v: [String]) { key(k, 9); u32(8); u64(UInt64(v.count)); for s in v { str(s) } }
        mutating func floats(_ k: String, _ v: [Float]) { key(k, 9); u32(6); u64(UInt64(v.count)); for f in v { u32(f.bitPattern) } }
        mutating func int32s(_ k: String, _ v: [Int32]) { key(k, 9); u32(5); u64(UInt64(v.count)); for i in v { u32(UInt32(bitPattern: i)) } }
        func bytes() -> [UInt8] {
            var out = [UInt8]("GGUF".utf8)
            withUnsafeBytes(of: UInt32(3).littleEndian) { out += $0 }
            withUnsafeBytes(of: UInt64(0).littleEndian) { out += $0 }
            withUnsafeBytes(of: UInt64(count).littleEndian) { out += $0 }
            out += kv
            while out.count % 32 != 0 { out.append(0) }
            return out
        }
    }

    func testSentencePieceGGUFMatchesHF() throws {
        let model = try SentencePieceModel(path: TestPaths.shared.appendingPathComponent("tokenizers/mistral-v1.sentencepiece.model").path)
        var w = Writer()
        w.string("general.architecture", "llama")
        w.string("tokenizer.ggml.model", "llama")
        w.strings("tokenizer.ggml.tokens", model.pieces.map(\.piece))
        w.floats("tokenizer.ggml.scores", model.pieces.map(\.score))
        w.int32s("tokenizer.ggml.token_type", model.pieces.map { Int32($0.type) })
        w.uint32("tokenizer.ggml.bos_token_id", 1)
        w.uint32("tokenizer.ggml.eos_token_id", 2)
        w.uint32("tokenizer.ggml.unknown_token_id", 0)
        w.bool("tokenizer.ggml.add_bos_token", true)
        w.bool("tokenizer.ggml.add_eos_token", false)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("loft-sp-gguf-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let path = dir.appendingPathComponent("sp.gguf").path
        try Data(w.bytes()).write(to: URL(fileURLWithPath: path))
        let tok = try Tokenizer.load(source: path)
        XCTAssertEqual(tok.bosToken, "<s>"); XCTAssertEqual(tok.eosToken, "</s>"); XCTAssertEqual(tok.unkTokenID, 0)
        try TokenizerConformanceTests.check(tok, "sentencepiece-gguf", lossless: false)
    }
}
