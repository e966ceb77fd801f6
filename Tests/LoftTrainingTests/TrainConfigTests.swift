import Foundation
import XCTest
@testable import LoftTraining

final class TrainConfigTests: XCTestCase {
    func write(_ yaml: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("loft-config-\(UUID().uuidString).yaml").path
        try yaml.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func testQuickstartParses() throws {
        let c = try TrainConfig.load(path: TestPaths.repoRoot.appendingPathComponent("examples/quickstart.yaml").path)
        XCTAssertEqual(c.lora.rank, 16)
        XCTAssertEqual(c.lora.targetModules, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
        XCTAssertEqual(c.datasets.first?.variables["name"], "Loft Assistant")
        XCTAssertTrue(c.datasets.first!.path.hasSuffix("examples/identity.json"), "dataset paths resolve next to the config")
        XCTAssertEqual(c.lrScheduler, .cosine)
    }

    func testEveryProblemIsReportedAtOnceWithSuggestions() throws {
        let path = try write("""
        base_model: m.gguf
        datasets: [{path: d.jsonl, tpye: alpaca}]
        lora_rr: 8
        learning_rate: -1
        lr_scheduler: exponential
        micro_batch_size: 0
        wandb_project: x
        bf16: true
        """)
        XCTAssertThrowsError(try TrainConfig.load(path: path)) { error in
            let e = error as! ConfigError
            let text = e.problems.joined(separator: "\n")
            XCTAssertEqual(e.problems.count, 5, text)
            XCTAssertTrue(text.contains("unknown key 'lora_rr'; did you mean 'lora_r'?"), text)
            XCTAssertTrue(text.contains("datasets[0].tpye: unknown key; did you mean 'type'?"), text)
            XCTAssertTrue(text.contains("learning_rate: must be > 0"), text)
            XCTAssertTrue(text.contains("lr_scheduler: 'exponential'"), text)
            XCTAssertTrue(text.contains("micro_batch_size: must be ≥ 1"), text)
            XCTAssertTrue(e.description.hasPrefix(path), "the error names the file")
        }
    }

    func testDoRAKeys() throws {
        for key in ["use_dora", "peft_use_dora"] {
            let path = try write("base_model: m.gguf\ndatasets:\n  - path: d.jsonl\n    type: alpaca\n\(key): true\n")
            XCTAssertTrue(try TrainConfig.load(path: path).lora.useDoRA, key)
        }
        let plain = try write("base_model: m.gguf\ndatasets:\n  - path: d.jsonl\n    type: alpaca\n")
        XCTAssertFalse(try TrainConfig.load(path: plain).lora.useDoRA)
    }

    func testAxolotlKeysAreListedAsIgnoredAndOverridesApply() throws {
        let path = try write("""
        base_model: m.gguf
        datasets:
          - path: d.jsonl
            type: sharegpt
        lora_target_linear: true
        bf16: auto
        wandb_project: x
        learning_rate: 0.0002
        """)
        let c = try TrainConfig.load(path: path, overrides: ["learning_rate=1e-4", "max_steps=7", "lora_r=4"])
        XCTAssertEqual(c.ignoredKeys, ["bf16", "wandb_project"])
        XCTAssertEqual(c.learningRate, 1e-4)
        XCTAssertEqual(c.maxSteps, 7)
        XCTAssertEqual(c.lora.rank, 4)
        XCTAssertEqual(c.lora.targetModules.count, 7)
        XCTAssertEqual(c.datasets.first?.type, "sharegpt")
    }

    func testSchedulesMatchTransformers() {
        // get_cosine_schedule_with_warmup(num_warmup_steps=2, num_training_steps=10) at steps 0, 1, 2, 6, 10
        let cos = LearningRateSchedule.cosine
        XCTAssertEqual(cos.rate(base: 1, step: 0, total: 10, warmup: 2), 0)
        XCTAssertEqual(cos.rate(base: 1, step: 1, total: 10, warmup: 2), 0.5)
        XCTAssertEqual(cos.rate(base: 1, step: 2, total: 10, warmup: 2), 1)
        XCTAssertEqual(cos.rate(base: 1, step: 6, total: 10, warmup: 2), 0.5, accuracy: 1e-12)
        XCTAssertEqual(cos.rate(base: 1, step: 10, total: 10, warmup: 2), 0, accuracy: 1e-12)
        XCTAssertEqual(LearningRateSchedule.linear.rate(base: 1, step: 6, total: 10, warmup: 2), 0.5)
        XCTAssertEqual(LearningRateSchedule.constant.rate(base: 3, step: 9, total: 10, warmup: 2), 3)
    }
}
