import Foundation
import XCTest
import LoftData
import LoftModels
import LoftTensors
@testable import LoftTraining

/// The preference loop on a tiny model with synthetic pairs: it learns (the
/// margin grows), resumes bit for bit, and reads its config keys.
final class PreferenceTrainerTests: XCTestCase {
    static func pairs(seed: UInt64, count: Int = 10, kto: Bool = false) -> [PreferenceExample] {
        var rng = TrainingRandom(seed: seed)
        func ids(_ n: ClosedRange<Int>) -> [Int32] { (0 ..< Int.random(in: n, using: &rng)).map { _ in Int32.random(in: 0 ..< 256, using: &rng) } }
        return (0 ..< count).map { i in
            PreferenceExample(prompt: ids(3 ... 9), chosen: ids(2 ... 8), rejected: kto ? [] : ids(2 ... 8), label: kto ? i % 2 == 0 : nil)
        }
    }

    static func config(_ out: String, method: String = "dpo") -> TrainConfig {
        var c = TrainConfig()
        c.baseModel = TestPaths.repoRoot.appendingPathComponent("Tests/LoftModelsTests/Fixtures/tiny/llama").path
        c.lora = LoRAConfig(rank: 4, alpha: 8, dropout: 0, targetModules: LoRAConfig.allLinear)
        c.microBatchSize = 2
        c.gradientAccumulationSteps = 2
        c.maxSteps = 6
        c.learningRate = 1e-2
        c.warmupSteps = 1
        c.saveSteps = 3
        c.evalSteps = 3
        c.outputDir = out
        var p = PreferenceConfig()
        p.method = method
        c.preference = p
        return c
    }

    static func trainer(_ c: TrainConfig, kto: Bool = false) throws -> PreferenceTrainer {
        let (model, _) = try ModelLoader.load(c.baseModel, backend: c.computePrecision == .fp32 ? CPUBackend.shared : CPUBackend(computePrecision: c.computePrecision),
                                              baseWeights: c.baseWeights)
        return try PreferenceTrainer(config: c, model: model, train: pairs(seed: 3, kto: kto), validation: pairs(seed: 4, count: 4, kto: kto))
    }

    func testLearnsAndLogsTRLMetrics() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("loft-pref-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        let t = try Self.trainer(Self.config(root))
        var steps: [PreferenceTrainer.Event] = [], evals: [PreferenceTrainer.Event] = []
        t.onEvent = { e in if e.kind == .step { steps.append(e) }; if e.kind == .eval { evals.append(e) } }
        let state = try t.run()
        XCTAssertEqual(state.step, 6)
        // A fresh LoRA is its own reference: ln 2 and zero rewards at the first step.
        XCTAssertEqual(steps[0].loss!, log(2), accuracy: 1e-9)
        for key in ["rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen", "logps/rejected"] {
            XCTAssertNotNil(steps.last!.metrics[key], key)
            XCTAssertNotNil(evals.last!.metrics[key], "eval " + key)
        }
        XCTAssertLessThan(steps.last!.loss!, steps[0].loss!, "the loss falls")
        XCTAssertGreaterThan(steps.last!.metrics["rewards/margins"]!, 0)
    }

    func testResumedRunEqualsUninterruptedRun() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("loft-pref-resume-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        for method in ["dpo", "kto"] {
            var full = Self.config(root + "/\(method)-full", method: method)
            full.evalSteps = nil
            let a = try Self.trainer(full, kto: method == "kto").run()
            var cutConfig = Self.config(root + "/\(method)-cut", method: method)
            cutConfig.evalSteps = nil
            let first = try Self.trainer(cutConfig, kto: method == "kto")
            var seen = 0
            first.onEvent = { e in if e.kind == .step { seen += 1; if seen == 3 { first.stopRequested = true } } }
            try first.run()
            let second = try Self.trainer(cutConfig, kto: method == "kto")
            XCTAssertEqual(try second.resume(), root + "/\(method)-cut/checkpoint-3")
            let b = try second.run()
            XCTAssertEqual(a.losses.map(\.bitPattern), b.losses.map(\.bitPattern), method)
        }
    }

    /// What SFT trains with, preference training trains with: a QLoRA (NF4,
    /// double quant) base with gradient checkpointing, 8-bit AdamW, and fp16
    /// compute with loss scaling (bf16 too). Each run starts at ln 2, lowers
    /// the loss, and resumes from a checkpoint bit for bit.
    func testQLoRA8BitAdamWAndHalfPrecisionTrainAndResume() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("loft-pref-variants-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        let variants: [(String, (inout TrainConfig) -> Void)] = [
            ("qlora", { c in c.baseWeights = BaseWeightFormat(kind: .nf4, doubleQuant: true); c.gradientCheckpointing = true }),
            ("adamw_8bit", { c in c.optimizer = "adamw_8bit" }),
            ("fp16", { c in c.computePrecision = .fp16 }),
            ("bf16", { c in c.computePrecision = .bf16 }),
        ]
        for (name, apply) in variants {
            var full = Self.config(root + "/\(name)-full")
            full.evalSteps = nil
            apply(&full)
            let fullTrainer = try Self.trainer(full)
            if name == "qlora" { XCTAssertEqual(fullTrainer.model.layers[0].q.frozen.kindDescription, "nf4+dq") }
            var first: Double?
            fullTrainer.onEvent = { e in if e.kind == .step, first == nil { first = e.loss } }
            let a = try fullTrainer.run()
            XCTAssertEqual(first ?? 0, log(2), accuracy: 1e-6, "\(name): a fresh LoRA starts at ln 2")
            XCTAssertTrue(a.losses.allSatisfy(\.isFinite), "\(name): \(a.losses)")
            XCTAssertLessThan(a.losses.last!, a.losses.first!, "\(name): the loss falls")

            var cut = Self.config(root + "/\(name)-cut")
            cut.evalSteps = nil
            apply(&cut)
            let stopping = try Self.trainer(cut)
            var seen = 0
            stopping.onEvent = { e in if e.kind == .step { seen += 1; if seen == 3 { stopping.stopRequested = true } } }
            try stopping.run()
            let resumed = try Self.trainer(cut)
            XCTAssertEqual(try resumed.resume(), root + "/\(name)-cut/checkpoint-3")
            let b = try resumed.run()
            XCTAssertEqual(a.losses.map(\.bitPattern), b.losses.map(\.bitPattern), "\(name): resumed bit for bit")
        }
    }

    func testKTONeedsMicroBatchesOfTwo() throws {
        var c = Self.config("/tmp/unused", method: "kto")
        c.microBatchSize = 1
        XCTAssertThrowsError(try Self.trainer(c, kto: true)) { e in XCTAssertTrue("\(e)".contains("micro_batch_size must be ≥ 2"), "\(e)") }
        XCTAssertThrowsError(try Self.trainer(Self.config("/tmp/unused", method: "kto"), kto: false)) { e in
            XCTAssertTrue("\(e)".contains("boolean `label`"), "\(e)")
        }
    }

    func testConfigKeys() throws {
        let c = try TrainConfig.fromYAML("""
        rl: dpo
        rl_beta: 0.2
        dpo_loss_type: robust
        dpo_label_smoothing: 0.1
        rl_precompute_reference: true
        lora_model_dir: sft-out
        """)
        let p = try XCTUnwrap(c.preference)
        XCTAssertEqual(p.beta, 0.2)
        XCTAssertEqual(p.objective().name, "dpo/robust")
        XCTAssertTrue(p.precomputeReference)
        XCTAssertEqual(p.startingAdapter, "sft-out")
        XCTAssertEqual(try TrainConfig.fromYAML("rl: orpo\norpo_alpha: 0.3").preference?.objective().name, "orpo")
        XCTAssertEqual(try TrainConfig.fromYAML("rl: simpo\nsimpo_gamma: 1.0\ncpo_alpha: 0.5").preference?.objective().name, "simpo")
        XCTAssertEqual(try TrainConfig.fromYAML("rl: ipo").preference?.objective().name, "dpo/ipo")
        XCTAssertEqual(try TrainConfig.fromYAML("rl: kto\nkto_undesirable_weight: 1.5").preference?.ktoUndesirableWeight, 1.5)
        XCTAssertNil(try TrainConfig.fromYAML("lora_r: 8").preference)
        XCTAssertThrowsError(try TrainConfig.fromYAML("rl: ppo")) { e in XCTAssertTrue("\(e)".contains("use dpo, ipo, orpo, kto or simpo"), "\(e)") }
        XCTAssertThrowsError(try TrainConfig.fromYAML("rl_beta: 0.1")) { e in XCTAssertTrue("\(e)".contains("without `rl:`"), "\(e)") }
        XCTAssertThrowsError(try TrainConfig.fromYAML("rl: dpo\ndpo_label_smoothing: 0.5")) { e in XCTAssertTrue("\(e)".contains("[0, 0.5)"), "\(e)") }
        XCTAssertThrowsError(try TrainConfig.fromYAML("rl: dpo\nlora_model_dir: a\nbase_adapter: b")) { e in XCTAssertTrue("\(e)".contains("set one"), "\(e)") }
    }
}
