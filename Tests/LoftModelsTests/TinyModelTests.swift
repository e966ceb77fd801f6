import Foundation
import XCTest
import LoftInference
@testable import LoftModels
import LoftTensors

/// Tiny random-weight models of every supported architecture against
/// transformers' float32 eager forward (fixtures from tools/make_model_fixtures.py).
/// Tolerance: 1e-4 of the largest |logit| for each model.
final class TinyModelTests: XCTestCase {
    static let names = ["llama", "llama_rope_llama3", "llama_rope_linear", "llama_rope_dynamic", "llama_tied",
                        "mistral", "qwen2", "qwen3", "gemma3", "gemma2", "phi3", "phi4_mini", "qwen3_moe", "mixtral"]

    struct Expected: Decodable {
        struct Packed: Decodable {
            let input_ids: [Int32], position_ids: [Int32], sequence_lengths: [Int], logits: [Float]
        }
        struct Greedy: Decodable { let prompt_ids: [Int32], new_ids: [Int32] }
        let input_ids: [Int32]
        let logits: [Float]
        let packed: Packed
        let greedy: Greedy
    }

    func load(_ name: String) throws -> (LlamaModel, Expected) {
        let dir = TestPaths.fixtures.appendingPathComponent("tiny/\(name)")
        let (model, _) = try ModelLoader.load(dir.path)
        let data = try Data(contentsOf: dir.appendingPathComponent("expected.json"))
        return (model, try JSONDecoder().decode(Expected.self, from: data))
    }

    func assertClose(_ got: [Float], _ want: [Float], _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(got.count, want.count, what, file: file, line: line)
        let scale = want.map { abs($0) }.max() ?? 1
        let err = zip(got, want).map { abs($0 - $1) }.max() ?? 0
        XCTAssertLessThan(err / scale, 1e-4, "\(what): max |Δ| \(err) vs max |logit| \(scale)", file: file, line: line)
    }

    func testLogitsMatchTransformers() throws {
        for name in Self.names {
            let (model, expected) = try load(name)
            let logits = model.forward(ids: expected.input_ids)
            assertClose(logits.toArray(), expected.logits, name)
        }
    }

    func testPackedSequencesMatchSeparateRuns() throws {
        for name in Self.names {
            let (model, expected) = try load(name)
            let p = expected.packed
            let logits = model.forward(ids: p.input_ids, positions: p.position_ids,
                                       segments: [0, p.sequence_lengths[0]])
            assertClose(logits.toArray(), p.logits, "\(name) packed")
        }
    }

    func testGreedyGenerationWithKVCacheMatchesTransformers() throws {
        for name in Self.names {
            let (model, expected) = try load(name)
            let result = Generator(model: model).generate(prompt: expected.greedy.prompt_ids, maxNewTokens: 10)
            XCTAssertEqual(result.tokens, expected.greedy.new_ids, name)
        }
    }

    func testCachedDecodingEqualsFullForward() throws {
        for name in ["qwen3", "gemma3", "gemma2", "phi3", "phi4_mini", "qwen3_moe", "mixtral"] { try cachedDecodingEqualsFullForward(name) }
    }

    func cachedDecodingEqualsFullForward(_ name: String) throws {
        // The logits of the last token, decoded one at a time with the cache, equal a full
        // forward (12 tokens: past gemma3's sliding window of 8).
        let (model, expected) = try load(name)
        let ids = Array(expected.input_ids.prefix(12))
        let cache = KVCache(config: model.config, capacity: ids.count, backend: model.backend)
        _ = model.forward(ids: Array(ids.prefix(8)), cache: cache)
        var last: [Float] = []
        for id in ids.dropFirst(8) { last = model.forward(ids: [id], cache: cache).toArray() }
        let full = model.forward(ids: ids, logitRows: [ids.count - 1]).toArray()
        assertClose(last, full, "\(name) cached vs full")
    }
}
