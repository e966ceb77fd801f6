import Foundation
import XCTest
@testable import LoftEngine
import LoftFormats
import LoftInference
import LoftModels
import LoftTensors
import LoftTestSupport

/// A DPO adapter trained over a frozen SFT adapter (`base_adapter`) loads
/// with the SFT adapter under it, everywhere: as one model's adapter, as a
/// per-row adapter of the engine, and in merge's explicit chain.
final class StackedAdapterTests: XCTestCase {
    /// SFT (rank 4, every projection) under DPO (rank 2, three of them, its
    /// own scale), with DPO's loft_run.json naming SFT as its base adapter.
    func makeChain(_ model: LlamaModel, seed: UInt64) throws -> (sft: String, dpo: String) {
        let sft = try EngineFixtures.randomAdapter(for: model, rank: 4, alpha: 8, scale: 0.2, seed: seed, name: "sft")
        let dpo = try EngineFixtures.randomAdapter(for: model, rank: 2, alpha: 7, scale: 0.2,
                                                   modules: ["q_proj", "v_proj", "down_proj"], seed: seed &+ 1, name: "dpo")
        let run = try JSONSerialization.data(withJSONObject: ["base_adapter": sft, "rl": "dpo"])
        try run.write(to: URL(fileURLWithPath: dpo).appendingPathComponent("loft_run.json"))
        return (sft, dpo)
    }

    /// Logits of the model as training saw it: SFT frozen under DPO.
    func referenceLogits(_ sft: String, _ dpo: String, ids: [Int32]) throws -> [Float] {
        let (model, _) = try ModelLoader.load(EngineFixtures.tinyLlama)
        try PEFTAdapter.load(sft, into: model, stack: false)
        try model.freezeAdapters()
        try PEFTAdapter.load(dpo, into: model, stack: false)
        return model.forward(ids: ids).toArray()
    }

    func testStackedLoadEqualsSFTFrozenUnderDPO() throws {
        let seed = UInt64.random(in: 0 ... 1 << 40)
        var rng = SeededRandom(seed: seed)
        let (model, _) = try ModelLoader.load(EngineFixtures.tinyLlama)
        let (sft, dpo) = try makeChain(model, seed: seed)
        let ids = EngineFixtures.randomPrompt(&rng, length: 9, vocab: 256)
        let want = try referenceLogits(sft, dpo, ids: ids)

        let config = try PEFTAdapter.load(dpo, into: model)
        XCTAssertEqual(config.rank, 6)
        XCTAssertEqual(config.scale, 1)
        let got = model.forward(ids: ids).toArray()
        let scale = Double(want.map { abs($0) }.max()!)
        let err = Double(zip(want, got).map { abs($0 - $1) }.max()!)
        XCTAssertLessThan(err / scale, 1e-5, "seed \(seed): stacked vs frozen-under (f32 summation only)")

        // DPO alone is another model: the test can tell the two apart.
        try PEFTAdapter.load(dpo, into: model, stack: false)
        let alone = model.forward(ids: ids).toArray()
        XCTAssertGreaterThan(Double(zip(want, alone).map { abs($0 - $1) }.max()!) / scale, 1e-3, "seed \(seed)")
    }

    func testEngineServesTheStackedAdapter() throws {
        let seed = UInt64.random(in: 0 ... 1 << 40)
        var rng = SeededRandom(seed: seed)
        let (engine, model) = try EngineFixtures.tinyEngine()
        defer { engine.shutdown() }
        let (sft, dpo) = try makeChain(model, seed: seed)
        _ = try engine.loadAdapter(name: "dpo", directory: dpo)
        let prompt = EngineFixtures.randomPrompt(&rng, length: 7, vocab: 256)
        let got = try engine.generate([GenerationRequest(model: "dpo", prompt: prompt, maxTokens: 10, ignoreEOS: true),
                                       GenerationRequest(prompt: prompt, maxTokens: 10, ignoreEOS: true)])
        let (reference, _) = try ModelLoader.load(EngineFixtures.tinyLlama)
        try PEFTAdapter.load(sft, into: reference, stack: false)
        try reference.freezeAdapters()
        try PEFTAdapter.load(dpo, into: reference, stack: false)
        let want = Generator(model: reference).generate(prompt: prompt, maxNewTokens: 10).tokens
        XCTAssertEqual(got[0].choices[0].tokens, want, "seed \(seed)")
    }

    func testMissingOrMismatchedBaseAdapterIsNamed() throws {
        let (model, _) = try ModelLoader.load(EngineFixtures.tinyLlama)
        let (sft, dpo) = try makeChain(model, seed: 7)
        // merge's chain must give the recorded base right before the adapter.
        let other = try EngineFixtures.randomAdapter(for: model, seed: 9, name: "other")
        XCTAssertThrowsError(try ModelMerger.merge(modelPath: EngineFixtures.tinyLlama, adapters: [other, dpo],
                                                   to: EngineFixtures.tempDirectory("merge") + "/out")) {
            XCTAssertTrue("\($0)".contains("base_adapter"), "\($0)")
        }
        try FileManager.default.removeItem(atPath: sft)
        XCTAssertThrowsError(try PEFTAdapter.load(dpo, into: model)) {
            XCTAssertTrue("\($0)".contains("which is gone"), "\($0)")
        }
    }
}
