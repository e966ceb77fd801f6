import Foundation
import XCTest
import LoftTokenizers
import LoftFormats
@testable import LoftModels
import LoftTensors

/// `ModelMerger` against the unmerged model: base + attached adapter is the
/// reference, and the merged checkpoint must give the same logits within 1e-4
/// of the largest |logit|. Each case also checks the adapter moves the logits
/// by far more than that, so the comparison could fail.
final class MergeTests: XCTestCase {
    static let trainingFixtures = TestPaths.repoRoot.appendingPathComponent("Tests/LoftTrainingTests/Fixtures")
    let ids: [Int32] = [1, 17, 42, 99, 5, 63, 120, 7]

    func tempDir(_ name: String) -> String {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("loft-merge-\(name)-\(UUID().uuidString)")
        addTeardownBlock { try? FileManager.default.removeItem(at: d) }
        return d.path
    }

    func maxRel(_ got: [Float], _ want: [Float]) -> Float {
        let scale = want.map { abs($0) }.max() ?? 1
        return (zip(got, want).map { abs($0 - $1) }.max() ?? 0) / scale
    }

    func check(base: String, adapter: String, ids: [Int32], name: String, maxShardBytes: Int = 2_000_000_000) throws -> String {
        let (model, _) = try ModelLoader.load(base)
        let plain = model.forward(ids: ids).toArray()
        try PEFTAdapter.load(adapter, into: model)
        let adapted = model.forward(ids: ids).toArray()
        XCTAssertGreaterThan(maxRel(plain, adapted), 1e-3, "\(name): the adapter must change the logits for this test to mean anything")
        let out = tempDir(name)
        let report = try ModelMerger.merge(modelPath: base, adapter: adapter, to: out,
                                           options: .init(dtype: .fp32, maxShardBytes: maxShardBytes))
        XCTAssertEqual(report.mergedProjections, model.adapterSlots.count)
        let (merged, _) = try ModelLoader.load(out)
        XCTAssertTrue(merged.adapterSlots.isEmpty)
        let got = merged.forward(ids: ids).toArray()
        XCTAssertLessThan(maxRel(got, adapted), 1e-4, "\(name): merged vs base+adapter")
        return out
    }

    func testTinyLlamaMergeMatchesAdapter() throws {
        let base = TestPaths.fixtures.appendingPathComponent("tiny/llama").path
        let out = try check(base: base, adapter: Self.trainingFixtures.appendingPathComponent("tiny_llama/initial_adapter").path,
                            ids: ids, name: "tiny_llama")
        let config = try ModelConfig.fromHF(path: out + "/config.json")
        XCTAssertEqual(config, try ModelConfig.fromHF(path: base + "/config.json"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/generation_config.json"))
    }

    func testTinyQwen3MergeShardedMatchesAdapter() throws {
        // A tiny shard limit forces model.safetensors.index.json and several shards.
        let out = try check(base: TestPaths.fixtures.appendingPathComponent("tiny/qwen3").path,
                            adapter: Self.trainingFixtures.appendingPathComponent("tiny_qwen3/initial_adapter").path,
                            ids: ids, name: "tiny_qwen3", maxShardBytes: 40_000)
        let index = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/model.safetensors.index.json"))) as? [String: Any]
        let map = index?["weight_map"] as? [String: String] ?? [:]
        XCTAssertGreaterThan(Set(map.values).count, 1)
        XCTAssertNil(map["lm_head.weight"], "qwen3 tiny ties its embeddings")
    }

    func testTinyGemma3MergeMatchesAdapter() throws {
        // Gemma's four norms per layer under their own names, and its config read back whole.
        let base = TestPaths.fixtures.appendingPathComponent("tiny/gemma3").path
        let out = try check(base: base, adapter: Self.trainingFixtures.appendingPathComponent("tiny_gemma3/initial_adapter").path,
                            ids: ids, name: "tiny_gemma3")
        XCTAssertEqual(try ModelConfig.fromHF(path: out + "/config.json"), try ModelConfig.fromHF(path: base + "/config.json"))
        // The config Loft writes for a GGUF source (no config.json to copy) reads back as the same model.
        let (model, _) = try ModelLoader.load(base)
        let written = try ModelConfig.fromHF(json: ModelMerger.hfConfig(model.config), source: "written")
        XCTAssertEqual(written, model.config)
        // Gemma 2's too (its soft-caps and one RoPE base).
        let (gemma2, _) = try ModelLoader.load(TestPaths.fixtures.appendingPathComponent("tiny/gemma2").path)
        XCTAssertEqual(try ModelConfig.fromHF(json: ModelMerger.hfConfig(gemma2.config), source: "written"), gemma2.config)
        XCTAssertEqual(gemma2.config.attentionSoftcap, 2)
        XCTAssertEqual(gemma2.config.finalLogitSoftcap, 5)
    }

    func testTinyGemma2MergeMatchesAdapterAndKeepsFloats() throws {
        let out = try check(base: TestPaths.fixtures.appendingPathComponent("tiny/gemma2").path,
                            adapter: Self.trainingFixtures.appendingPathComponent("tiny_gemma2/initial_adapter").path,
                            ids: ids, name: "tiny_gemma2")
        // transformers' strict config refuses an integer where a float belongs.
        let text = try String(contentsOfFile: out + "/config.json", encoding: .utf8)
        XCTAssertTrue(text.contains("\"final_logit_softcapping\": 5.0"), text)
        XCTAssertTrue(text.contains("\"rms_norm_eps\": 1e-06"), text)
    }

    func testTinyPhi3MergeMatchesAdapter() throws {
        // The adapter on Phi-3's fused qkv_proj and gate_up_proj merges back into them.
        let base = TestPaths.fixtures.appendingPathComponent("tiny/phi3").path
        let out = try check(base: base, adapter: Self.trainingFixtures.appendingPathComponent("tiny_phi3/initial_adapter").path,
                            ids: ids, name: "tiny_phi3")
        let index = try SafetensorsCheckpoint(path: out + "/model.safetensors")
        XCTAssertTrue(index.tensorNames.contains("model.layers.0.self_attn.qkv_proj.weight"))
        XCTAssertTrue(index.tensorNames.contains("model.layers.1.mlp.gate_up_proj.weight"))
        XCTAssertFalse(index.tensorNames.contains { $0.contains("q_proj") || $0.contains("gate_proj") })
        let config = try ModelConfig.fromHF(path: base + "/config.json")
        XCTAssertEqual(try ModelConfig.fromHF(path: out + "/config.json"), config)
        // The config Loft writes for a GGUF source reads back as the same model, LongRoPE included.
        XCTAssertEqual(try ModelConfig.fromHF(json: ModelMerger.hfConfig(config), source: "written"), config)
        guard case .longRoPE(let short, let long, 14, let factor) = config.ropeScaling else {
            return XCTFail("tiny phi3 has LongRoPE: \(config.ropeScaling)")
        }
        XCTAssertEqual(short.count, 8)
        XCTAssertEqual(long.last, 16)
        XCTAssertEqual(factor, (1 + Foundation.log(64.0 / 14) / Foundation.log(14.0)).squareRoot(), accuracy: 1e-12)
        // Phi-4-mini's partial rotary and tied embeddings survive the written config.
        let mini = try ModelConfig.fromHF(path: TestPaths.fixtures.appendingPathComponent("tiny/phi4_mini/config.json").path)
        XCTAssertEqual(mini.rotaryDims, 12)
        XCTAssertEqual(try ModelConfig.fromHF(json: ModelMerger.hfConfig(mini), source: "written"), mini)
    }

    /// Mixture of experts: the router and every expert are written beside the
    /// merged attention, under each family's names, and the configs written
    /// for a GGUF source read back as the same models.
    func testTinyMoEMergesMatchAdapter() throws {
        for (name, router, expert) in [("qwen3_moe", "model.layers.0.mlp.gate.weight", "model.layers.0.mlp.experts.3.down_proj.weight"),
                                       ("mixtral", "model.layers.1.block_sparse_moe.gate.weight",
                                        "model.layers.1.block_sparse_moe.experts.3.w2.weight")] {
            let base = TestPaths.fixtures.appendingPathComponent("tiny/\(name)").path
            let out = try check(base: base, adapter: Self.trainingFixtures.appendingPathComponent("tiny_\(name)/initial_adapter").path,
                                ids: ids, name: name)
            let names = try SafetensorsCheckpoint(path: out + "/model.safetensors").tensorNames
            XCTAssertEqual(names, try SafetensorsCheckpoint(path: base + "/model.safetensors").tensorNames, name)
            XCTAssertTrue(names.contains(router) && names.contains(expert), name)
            let config = try ModelConfig.fromHF(path: base + "/config.json")
            XCTAssertEqual(try ModelConfig.fromHF(json: ModelMerger.hfConfig(config), source: "written"), config, name)
        }
    }

    func testSmolLM2GGUFMergeMatchesAdapter() throws {
        let out = try check(base: TestPaths.smolLM2,
                            adapter: Self.trainingFixtures.appendingPathComponent("smollm2/initial_adapter").path,
                            ids: [504, 3575, 282, 4649, 314], name: "smollm2")
        let tc = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/tokenizer_config.json"))) as? [String: Any]
        XCTAssertNotNil(tc?["chat_template"] as? String)
        XCTAssertEqual(tc?["eos_token"] as? String, "<|im_end|>")
        // The tokenizer.json rebuilt from the GGUF tokenizes as the GGUF does
        // (transformers' AutoTokenizer on it: tools/check_merge_transformers.py --smollm2).
        let fromDir = try Tokenizer.load(source: out), fromGGUF = try Tokenizer.load(source: TestPaths.smolLM2)
        for text in ["Hello world", "  spaces\tand\nnewlines 12345", " ünïcödé ✓ 3.14", "<|im_start|>user\nHi<|im_end|>\n"] {
            XCTAssertEqual(fromDir.encode(text, addSpecialTokens: true), fromGGUF.encode(text, addSpecialTokens: true), text)
        }
        XCTAssertEqual(fromDir.eosTokenID, fromGGUF.eosTokenID)
    }

    func testRefusesNonEmptyOutputAndNaN() throws {
        let out = tempDir("busy")
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        try Data("x".utf8).write(to: URL(fileURLWithPath: out + "/keep.txt"))
        let base = TestPaths.fixtures.appendingPathComponent("tiny/llama").path
        let adapter = Self.trainingFixtures.appendingPathComponent("tiny_llama/initial_adapter").path
        XCTAssertThrowsError(try ModelMerger.merge(modelPath: base, adapter: adapter, to: out)) { e in
            XCTAssertTrue("\(e)".contains("--overwrite"), "\(e)")
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/keep.txt"))
        // An adapter with a NaN is refused before anything is written.
        let (model, opened) = try ModelLoader.load(base)
        try PEFTAdapter.load(adapter, into: model)
        model.layers[0].q.lora!.b.floats[3] = .nan
        let fresh = tempDir("nan")
        XCTAssertThrowsError(try ModelMerger.write(model: model, opened: opened, sourcePath: base, adapter: nil, to: fresh)) { e in
            XCTAssertTrue("\(e)".contains("q_proj"), "\(e)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: fresh))
    }

    func testMergeArithmeticAgainstDoubleReference() {
        // W + s·B·A computed independently in Float64.
        var g = SystemRandomNumberGenerator()
        let (o, i, r) = (5, 7, 3)
        let w = (0 ..< o * i).map { _ in Float.random(in: -1 ... 1, using: &g) }
        let a = (0 ..< r * i).map { _ in Float.random(in: -1 ... 1, using: &g) }
        let b = (0 ..< o * r).map { _ in Float.random(in: -1 ... 1, using: &g) }
        let got = ModelMerger.merge(weight: w, out: o, in: i, a: a, b: b, rank: r, scale: 0.75)
        for oo in 0 ..< o { for ii in 0 ..< i {
            var ref = Double(w[oo * i + ii])
            for k in 0 ..< r { ref += 0.75 * Double(b[oo * r + k]) * Double(a[k * i + ii]) }
            XCTAssertEqual(Double(got[oo * i + ii]), ref, accuracy: 1e-5)
        } }
    }

    func testEncodeDTypes() throws {
        let v: [Float] = [1, -2.5, 0.1, 3e4]
        let bf = try ModelMerger.encode(v, as: .bf16, name: "t")
        XCTAssertEqual(bf.count, 8)
        XCTAssertEqual(bf[0...1], [0x80, 0x3f])  // 1.0 = 0x3F80
        let h = try ModelMerger.encode(v, as: .fp16, name: "t")
        XCTAssertEqual(h[0...1], [0x00, 0x3c])  // 1.0 = 0x3C00
        XCTAssertThrowsError(try ModelMerger.encode([1e5], as: .fp16, name: "big"))
    }
}

/// The logits transformers computes from the directories `loft merge` writes
/// (tools/check_merge_transformers.py, which also checks them against PEFT's
/// base+adapter and merge_and_unload within 1e-4).
final class MergeTransformersFixtureTests: XCTestCase {
    struct Expected: Decodable {
        struct Case: Decodable { let base: String, adapter: String, logits: [Float] }
        let ids: [Int32]
        let cases: [String: Case]
    }

    func testMergedDirectoriesMatchTransformersLogits() throws {
        let data = try Data(contentsOf: TestPaths.fixtures.appendingPathComponent("merge/expected.json"))
        let expected = try JSONDecoder().decode(Expected.self, from: data)
        XCTAssertEqual(expected.cases.count, 7)
        for (name, c) in expected.cases.sorted(by: { $0.key < $1.key }) {
            let out = FileManager.default.temporaryDirectory.appendingPathComponent("loft-mergefx-\(UUID().uuidString)").path
            defer { try? FileManager.default.removeItem(atPath: out) }
            try ModelMerger.merge(modelPath: TestPaths.repoRoot.appendingPathComponent(c.base).path,
                                  adapter: TestPaths.repoRoot.appendingPathComponent(c.adapter).path, to: out,
                                  options: .init(dtype: .fp32))
            let (merged, _) = try ModelLoader.load(out)
            let got = merged.forward(ids: expected.ids).toArray()
            XCTAssertEqual(got.count, c.logits.count, name)
            let scale = c.logits.map { abs($0) }.max() ?? 1
            let err = zip(got, c.logits).map { abs($0 - $1) }.max() ?? .infinity
            XCTAssertLessThan(err / scale, 1e-4, "\(name): Loft's merged model vs transformers on the same directory")
        }
    }
}
