import Foundation
import XCTest
import LoftInference
@testable import LoftModels
import LoftTensors

/// The real SmolLM2-135M-Instruct GGUF (Q4_1, fetched by tools/fetch-model.sh)
/// against transformers' GGUF loader in float32 (fixtures from
/// tools/make_model_fixtures.py). Tolerance: 1e-4 of the largest |logit|.
final class SmolLM2Tests: XCTestCase {
    struct Expected: Decodable {
        struct Prompt: Decodable {
            let text: String
            let input_ids: [Int32]
            let top10_ids: [Int]
            let last_logits_file: String
            let pos2_logits_file: String?
            let argmax_ids_all_positions: [Int]?
        }
        struct Greedy: Decodable { let prompt_ids: [Int32], new_ids: [Int32] }
        let prompts: [Prompt]
        let greedy: [String: Greedy]
    }

    static let shared: (LlamaModel, Expected)? = {
        guard let (model, _) = try? ModelLoader.load(TestPaths.smolLM2),
              let data = try? Data(contentsOf: TestPaths.fixtures.appendingPathComponent("smollm2/expected.json")),
              let expected = try? JSONDecoder().decode(Expected.self, from: data) else { return nil }
        return (model, expected)
    }()

    func model() throws -> (LlamaModel, Expected) {
        guard let m = Self.shared else {
            XCTFail("cannot load \(TestPaths.smolLM2) or its fixtures: run tools/fetch-model.sh first")
            throw XCTSkip("model missing")
        }
        return m
    }

    func readF32(_ name: String) throws -> [Float] {
        let data = try Data(contentsOf: TestPaths.fixtures.appendingPathComponent("smollm2/\(name)"))
        return data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }

    func assertClose(_ got: [Float], _ want: [Float], _ what: String) {
        XCTAssertEqual(got.count, want.count, what)
        let scale = want.map { abs($0) }.max() ?? 1
        let err = zip(got, want).map { abs($0 - $1) }.max() ?? 0
        XCTAssertLessThan(err / scale, 1e-4, "\(what): max |Δ| \(err) vs max |logit| \(scale)")
    }

    func testLastPositionLogitsMatchTransformers() throws {
        let (m, expected) = try model()
        for p in expected.prompts {
            let logits = m.forward(ids: p.input_ids, logitRows: [p.input_ids.count - 1]).toArray()
            assertClose(logits, try readF32(p.last_logits_file), p.text)
            let top = logits.indices.sorted { logits[$0] > logits[$1] }.prefix(10)
            XCTAssertEqual(Array(top.prefix(3)), Array(p.top10_ids.prefix(3)), p.text)
        }
    }

    func testEveryPositionOfTheFirstPrompt() throws {
        let (m, expected) = try model()
        let p = expected.prompts[0]
        let logits = m.forward(ids: p.input_ids)
        let v = m.config.vocabSize
        let all = logits.toArray()
        if let file = p.pos2_logits_file { assertClose(Array(all[2 * v ..< 3 * v]), try readF32(file), "position 2") }
        let argmax = (0 ..< p.input_ids.count).map { r in (0 ..< v).max { all[r * v + $0] < all[r * v + $1] }! }
        XCTAssertEqual(argmax, p.argmax_ids_all_positions)
    }

    func testGreedyGenerationMatchesTransformers() throws {
        let (m, expected) = try model()
        for (name, g) in expected.greedy.sorted(by: { $0.key < $1.key }) {
            let result = Generator(model: m).generate(prompt: g.prompt_ids, maxNewTokens: g.new_ids.count)
            XCTAssertEqual(result.tokens, g.new_ids, name)
        }
    }
}
