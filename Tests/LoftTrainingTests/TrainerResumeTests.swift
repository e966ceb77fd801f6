import Foundation
import XCTest
import LoftData
import LoftModels
import LoftTensors
@testable import LoftTraining

/// The trainer on a tiny model with synthetic data: an interrupted run that
/// resumes from its checkpoint follows the uninterrupted run bit for bit.
final class TrainerResumeTests: XCTestCase {
    static func examples(seed: UInt64) -> [TokenizedExample] {
        var rng = TrainingRandom(seed: seed)
        return (0 ..< 12).map { _ in
            let n = Int.random(in: 6 ... 20, using: &rng)
            let ids = (0 ..< n).map { _ in Int32.random(in: 0 ..< 256, using: &rng) }
            var labels = ids
            for i in 0 ..< 3 { labels[i] = -100 }
            return TokenizedExample(ids: ids, labels: labels)
        }
    }

    static func config(_ out: String) -> TrainConfig {
        var c = TrainConfig()
        c.baseModel = TestPaths.repoRoot.appendingPathComponent("Tests/LoftModelsTests/Fixtures/tiny/llama").path
        c.lora = LoRAConfig(rank: 4, alpha: 8, dropout: 0.1, targetModules: LoRAConfig.allLinear)
        c.microBatchSize = 2
        c.gradientAccumulationSteps = 2
        c.maxSteps = 8
        c.learningRate = 5e-3
        c.lrScheduler = .cosine
        c.warmupSteps = 2
        c.saveSteps = 3
        c.samplePacking = true
        c.sequenceLen = 32
        c.outputDir = out
        return c
    }

    static func trainer(_ c: TrainConfig, backend: Backend = CPUBackend.shared, onDisk: String? = nil) throws -> Trainer {
        let (model, _) = try ModelLoader.load(c.baseModel, backend: backend)
        let validation = Array(examples(seed: 8).prefix(3))
        if let onDisk {   // the training examples read from a token cache, a micro-batch at a time
            let shards = try TokenShards.write(examples(seed: 7), to: onDisk)
            let set = try shards.streamed(options: DataOptions(sequenceLen: c.sequenceLen)).train
            XCTAssertTrue(set.isOnDisk)
            return try Trainer(config: c, model: model, train: set, validation: validation)
        }
        return try Trainer(config: c, model: model, train: examples(seed: 7), validation: validation)
    }

    func testResumedRunEqualsUninterruptedRun() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("loft-resume-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: root) }

        let full = try Self.trainer(Self.config(root + "/full")).run()
        XCTAssertEqual(full.losses.count, 8)
        XCTAssertLessThan(full.losses.last!, full.losses.first!, "the loss falls")

        // Stop after step 4 (its checkpoint is step 3), then resume in a fresh trainer.
        let first = try Self.trainer(Self.config(root + "/cut"))
        var seen = 0
        first.onEvent = { e in if e.kind == .step { seen += 1; if seen == 4 { first.stopRequested = true } } }
        try first.run()
        XCTAssertNotNil(Checkpoint.latest(in: root + "/cut"))
        // Simulate a crash that lost the step-4 checkpoint: resume from step 3.
        try FileManager.default.removeItem(atPath: root + "/cut/checkpoint-4")
        // The resumed run reads its examples from disk: the same steps.
        let second = try Self.trainer(Self.config(root + "/cut"), onDisk: root + "/shards")
        XCTAssertEqual(try second.resume(), root + "/cut/checkpoint-3")
        let resumed = try second.run()
        XCTAssertEqual(resumed.losses, full.losses, "bit-for-bit equal losses after resuming")
        let a = full.losses.map(\.bitPattern), b = resumed.losses.map(\.bitPattern)
        XCTAssertEqual(a, b)
    }

    func testCheckpointLimitKeepsNewest() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("loft-limit-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        var c = Self.config(root)
        c.saveSteps = 2
        c.saveTotalLimit = 2
        try Self.trainer(c).run()
        let names = try FileManager.default.contentsOfDirectory(atPath: root).filter { $0.hasPrefix("checkpoint-") }.sorted()
        XCTAssertEqual(names, ["checkpoint-6", "checkpoint-8"])
        XCTAssertFalse(try FileManager.default.contentsOfDirectory(atPath: root).contains { $0.hasSuffix(".partial") })
    }

    func testEvaluationAndEarlyStopping() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("loft-eval-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        var c = Self.config(root)
        c.evalSteps = 1
        c.learningRate = 0.5  // large enough to overshoot, so eval loss stops improving
        c.earlyStoppingPatience = 1
        c.maxSteps = 40
        c.saveSteps = nil
        let state = try Self.trainer(c).run()
        XCTAssertLessThan(state.step, 40, "early stopping ended the run")
        XCTAssertNotNil(state.bestStep)
        XCTAssertTrue(FileManager.default.fileExists(atPath: root + "/checkpoint-\(state.step)"), "stopping writes a checkpoint")
    }
}
