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

    /// A config in the shape of Axolotl's own examples (empty keys, Axolotl-only
    /// keys, chat_template field and role mappings) loads, listing what it ignores.
    func testAxolotlExampleShapedConfigLoads() throws {
        let path = try write("""
        base_model: NousResearch/Llama-3.2-1B
        model_type: LlamaForCausalLM
        strict: false
        chat_template: llama3
        datasets:
          - path: chats.jsonl
            type: chat_template
            field_messages: conversation
            message_field_role: speaker
            message_field_content: text
            roles:
              user: [human, user]
              assistant: [gpt]
        dataset_prepared_path:
        val_set_size: 0.05
        output_dir: ./outputs/lora-out
        adapter: lora
        lora_model_dir:
        sequence_len: 2048
        sample_packing: true
        eval_sample_packing: true
        pad_to_sequence_len: true
        lora_r: 16
        lora_alpha: 32
        lora_dropout: 0.05
        lora_fan_in_fan_out:
        lora_target_linear: true
        peft_use_dora: true
        lora_modules_to_save:
          - lm_head
        wandb_project:
        gradient_accumulation_steps: 2
        micro_batch_size: 2
        num_epochs: 1
        lr_scheduler: cosine
        learning_rate: 0.0002
        train_on_inputs: false
        bf16: auto
        fp16:
        gradient_checkpointing: true
        early_stopping_patience:
        resume_from_checkpoint:
        logging_steps: 1
        flash_attention: true
        loss_watchdog_threshold: 5.0
        loss_watchdog_patience: 3
        warmup_steps: 10
        evals_per_epoch: 4
        saves_per_epoch: 1
        weight_decay: 0.0
        special_tokens:
          pad_token: "<|end_of_text|>"
        """)
        let c = try TrainConfig.load(path: path)
        XCTAssertEqual(c.baseModel, "NousResearch/Llama-3.2-1B")
        XCTAssertEqual(c.ignoredKeys, ["bf16", "eval_sample_packing", "evals_per_epoch", "flash_attention",
                                       "loss_watchdog_patience", "loss_watchdog_threshold", "model_type", "pad_to_sequence_len",
                                       "saves_per_epoch", "special_tokens", "strict"])
        XCTAssertTrue(c.lora.useDoRA)
        XCTAssertEqual(c.lora.modulesToSave, ["lm_head"])
        XCTAssertEqual(c.lora.targetModules.count, 7)
        XCTAssertNil(c.earlyStoppingPatience, "an empty key is unset")
        let d = try XCTUnwrap(c.datasets.first)
        XCTAssertEqual(d.fieldMap["messages"], "conversation")
        XCTAssertEqual(d.fieldMap["role"], "speaker")
        XCTAssertEqual(d.fieldMap["content"], "text")
        XCTAssertEqual(d.roleMap, ["human": "user", "user": "user", "gpt": "assistant"])
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
