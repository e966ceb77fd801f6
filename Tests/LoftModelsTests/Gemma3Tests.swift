import Foundation
import XCTest
import LoftInference
@testable import LoftModels
import LoftTensors
import LoftTokenizers
import LoftFormats

/// The real Gemma 3 270M GGUF (Q4_K_M, fetched by tools/fetch-gemma3.sh)
/// against transformers' GGUF loader in float32 (fixtures from
/// tools/make_gemma3_fixtures.py). Tolerance: 1e-4 of the largest |logit|, on
/// the 64 largest logits and every 64th of the 262 144.
final class Gemma3Tests: XCTestCase {
    struct Expected: Decodable {
        struct Case: Decodable {
            let text: String
            let input_ids: [Int32]
            let top64_ids: [Int]
            let top64_logits: [Float]
            let every64th_logits: [Float]
            let argmax_all_positions: [Int]
            let greedy_new_ids: [Int32]?
        }
        let cases: [Case]
    }

    static let shared: (LlamaModel, Tokenizer, Expected)? = {
        guard let (model, _) = try? ModelLoader.load(TestPaths.gemma3),
              let tokenizer = try? Tokenizer(gguf: GGUFFile(path: TestPaths.gemma3)),
              let data = try? Data(contentsOf: TestPaths.fixtures.appendingPathComponent("gemma3/expected.json")),
              let expected = try? JSONDecoder().decode(Expected.self, from: data) else { return nil }
        return (model, tokenizer, expected)
    }()

    func model() throws -> (LlamaModel, Tokenizer, Expected) {
        guard let m = Self.shared else {
            XCTFail("cannot load \(TestPaths.gemma3) or its fixtures: run tools/fetch-gemma3.sh first")
            throw XCTSkip("model missing")
        }
        return m
    }

    func testConfigFromGGUF() throws {
        let (m, _, _) = try model()
        let c = m.config
        XCTAssertEqual(c.architecture, .gemma3)
        XCTAssertEqual([c.layers, c.hiddenSize, c.heads, c.kvHeads, c.headDim, c.vocabSize], [18, 640, 4, 1, 256, 262_144])
        XCTAssertEqual(c.slidingWindow, 512)
        XCTAssertEqual(c.layerTypes.enumerated().filter { $0.element == .full }.map(\.offset), [5, 11, 17])
        XCTAssertEqual(c.localRopeTheta, 10_000)
        XCTAssertEqual(c.ropeTheta, 1_000_000)
        XCTAssertEqual(c.embeddingScale, Float(640.0.squareRoot()))
    }

    /// The texts tokenize as transformers does, and the last position's logits
    /// match; the 784-token case passes the 512-token window of the local layers.
    func testLogitsMatchTransformers() throws {
        let (m, tokenizer, expected) = try model()
        for c in expected.cases {
            XCTAssertEqual(tokenizer.encode(c.text), c.input_ids.map(Int.init), "tokens of \(c.text.prefix(30))")
            let v = m.config.vocabSize, n = c.input_ids.count
            // Every position's logits for the short prompts; the long one's would take 800 MB.
            let rows = n <= 64 ? Array(0 ..< n) : [n - 1]
            let logits = m.forward(ids: c.input_ids, logitRows: rows).toArray()
            let last = Array(logits[(rows.count - 1) * v ..< rows.count * v])
            let scale = c.top64_logits.map { abs($0) }.max()!
            let got = c.top64_ids.map { last[$0] } + stride(from: 0, to: v, by: 64).map { last[$0] }
            let want = c.top64_logits + c.every64th_logits
            let err = zip(got, want).map { abs($0 - $1) }.max()!
            XCTAssertLessThan(err / scale, 1e-4, "\(c.text.prefix(30)) (\(n) tokens): max |Δ| \(err) of \(scale)")
            let argmax = rows.indices.map { r in (0 ..< v).max { logits[r * v + $0] < logits[r * v + $1] }! }
            XCTAssertEqual(argmax, rows.map { c.argmax_all_positions[$0] }, "\(c.text.prefix(30)): argmax per position")
        }
    }

    /// Greedy continuations through `Generator` (KV cache, decoding on the GGUF blocks).
    func testGreedyGenerationMatchesTransformers() throws {
        let (m, _, expected) = try model()
        for c in expected.cases {
            guard let want = c.greedy_new_ids else { continue }
            let result = Generator(model: m).generate(prompt: c.input_ids, maxNewTokens: want.count)
            XCTAssertEqual(result.tokens, want, String(c.text.prefix(30)))
        }
    }
}

/// The tokenizer.json `loft merge` writes for a SentencePiece GGUF (Gemma's
/// pieces respelled, merges in file order) read back by Loft's tokenizer.json
/// loader: the ids transformers gives on the conformance corpus
/// (transformers itself loads the same file with no difference: checked by
/// tools/check_merge_transformers.py --gemma3).
final class Gemma3TokenizerJSONTests: XCTestCase {
    struct Corpus: Decodable {
        struct Case: Decodable { let text: String; let ids: [Int] }
        let cases: [Case]
    }

    func testWrittenTokenizerJSONEncodesAsTransformers() throws {
        let gguf = try GGUFFile(path: TestPaths.gemma3)
        let (data, reason) = try HFTokenizerWriter.tokenizerJSON(gguf)
        let json = try XCTUnwrap(data, reason ?? "")
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("loft-gemma-tok-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try json.write(to: dir.appendingPathComponent("tokenizer.json"))
        let tokenizer = try Tokenizer.load(source: dir.path)
        XCTAssertEqual(tokenizer.vocabularySize, 262_144)
        let corpusURL = TestPaths.repoRoot.appendingPathComponent("Tests/LoftTokenizersTests/Fixtures").appendingPathComponent("tokenizers/gemma3.json")
        let corpus = try JSONDecoder().decode(Corpus.self, from: Data(contentsOf: corpusURL))
        var wrong: [String] = []
        for c in corpus.cases where tokenizer.encode(c.text) != c.ids { wrong.append(c.text) }
        XCTAssertEqual(wrong, [], "\(wrong.count) of \(corpus.cases.count) texts tokenize differently")
    }
}
