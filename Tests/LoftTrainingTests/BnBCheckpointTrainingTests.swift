import Foundation
import XCTest
import LoftData
import LoftFormats
import LoftModels
@testable import LoftTraining

/// QLoRA on a checkpoint bitsandbytes already quantized (the nf4 + double
/// quant fixture of tools/make_bnb_checkpoint_fixtures.py): the config takes
/// `adapter: qlora` without load_in_4bit, the plan counts the stored 4-bit
/// base, a short run trains on the stored weights, and the adapter records
/// that base so merge folds it onto dequant(W4).
final class BnBCheckpointTrainingTests: XCTestCase {
    let base = TestPaths.repoRoot.appendingPathComponent("Tests/LoftModelsTests/Fixtures/bnb/nf4_dq").path
    let nf4DoubleQuant = BaseWeightFormat(kind: .nf4, doubleQuant: true)

    func config(_ yaml: String) throws -> TrainConfig { try TrainConfig.fromYAML(yaml, baseModel: base) }

    func testConfigAndPlanTakeTheStoredBase() throws {
        XCTAssertNoThrow(try config("adapter: qlora\n"), "a pre-quantized 4-bit base needs no load_in_4bit")
        XCTAssertNoThrow(try config("adapter: qlora\nload_in_4bit: true\nbnb_4bit_use_double_quant: false\n"))
        XCTAssertThrowsError(try config("adapter: lora\nload_in_8bit: true\n")) { e in
            XCTAssertTrue("\(e)".contains("already quantized by bitsandbytes as nf4"), "\(e)")
            XCTAssertTrue("\(e)".contains("load_in_8bit"), "\(e)")
        }
        let planner = try MemoryPlanner(config: try config("adapter: lora\n"))
        XCTAssertEqual(planner.base, .nf4(doubleQuant: true))
        // the planned base is what the loaded model holds: codes, 8-bit absmax, nested scales
        let weights = try XCTUnwrap(planner.plan().parts.first { $0.name == "base weights" }).bytes
        let (model, _) = try ModelLoader.load(base)
        let projections = model.layers.flatMap(\.projections).reduce(0) { $0 + $1.1.frozen.byteCount }
        let others = 4 * (2 * 256 * 64 + 5 * 64)  // embedding, lm_head, norms in f32
        XCTAssertLessThan(projections, 30720 * 2 * 6 / 10, "the projections stay 4-bit")
        // the planner counts the shared code tables once (2 KB): within 2%
        XCTAssertEqual(Double(weights), Double(projections + others), accuracy: 0.02 * Double(projections + others))
    }

    /// One sequence repeated: a few steps lower its loss.
    func examples() -> [TokenizedExample] {
        var rng = TrainingRandom(seed: 3)
        let ids = (0 ..< 16).map { _ in Int32.random(in: 0 ..< 256, using: &rng) }
        var labels = ids
        for i in 0 ..< 3 { labels[i] = -100 }
        return Array(repeating: TokenizedExample(ids: ids, labels: labels), count: 8)
    }

    func testShortRunSavesAndMerges() throws {
        let fm = FileManager.default
        let root = fm.temporaryDirectory.appendingPathComponent("loft-bnb-train-\(UUID().uuidString)").path
        defer { try? fm.removeItem(atPath: root) }
        var c = try config("adapter: qlora\nlora_r: 4\nlora_alpha: 8\nlora_target_linear: true\nmax_steps: 4\nmicro_batch_size: 2\nlearning_rate: 0.02\nsequence_len: 32\n")
        c.outputDir = root + "/out"
        let (model, _) = try ModelLoader.load(c.baseModel, baseWeights: c.baseWeights)
        XCTAssertEqual(model.baseWeights, nf4DoubleQuant)
        XCTAssertEqual(model.layers[1].down!.frozen.kindDescription, "nf4+dq")
        let trainer = try Trainer(config: c, model: model, train: examples(), validation: [])
        let state = try trainer.run()
        XCTAssertEqual(state.losses.count, 4)
        XCTAssertLessThan(state.losses.last!, state.losses.first!, "the loss falls")

        // what TrainingRun.saveOutputs writes: the adapter and the model's base record
        let adapter = root + "/adapter"
        try PEFTAdapter.save(model, config: c.lora, baseModel: c.baseModel, to: adapter)
        try model.baseWeights.write(toDirectory: adapter)
        XCTAssertEqual(try BaseWeightFormat.read(adapterDirectory: adapter), nf4DoubleQuant)

        let out = root + "/merged"
        let report = try ModelMerger.merge(modelPath: base, adapter: adapter, to: out, options: .init(dtype: .fp32))
        XCTAssertEqual(report.mergedProjections, 14)
        let merged = try SafetensorsCheckpoint(path: out)
        let name = "model.layers.1.mlp.down_proj"
        let (rows, cols) = (64, 96)
        let w4 = try SafetensorsFile(path: base + "/reference.safetensors").floats(named: "dequant." + name)
        let ad = try SafetensorsCheckpoint(path: adapter + "/adapter_model.safetensors")
        let a = try ad.floats(named: "base_model.model.\(name).lora_A.weight")
        let b = try ad.floats(named: "base_model.model.\(name).lora_B.weight")
        let got = try merged.floats(named: name + ".weight")
        var maxDelta = 0.0
        for o in 0 ..< rows {
            for j in 0 ..< cols {
                var delta = 0.0
                for k in 0 ..< 4 { delta += 2 * Double(b[o * 4 + k]) * Double(a[k * cols + j]) }  // α/r = 8/4
                XCTAssertEqual(Double(got[o * cols + j]), Double(w4[o * cols + j]) + delta, accuracy: 1e-6)
                maxDelta = max(maxDelta, abs(delta))
            }
        }
        XCTAssertGreaterThan(maxDelta, 1e-4, "training moved B away from zero, so the merge is tested")
    }
}
