import Foundation
import XCTest
import LoftFormats
import LoftModels
import LoftTensors
@testable import LoftTraining

/// One LoRA training step and a short AdamW run against PyTorch + PEFT
/// (fixtures from tools/make_training_fixtures.py). Tolerances: the loss
/// within 1e-5 and every LoRA gradient within 1e-4 relative (max |Δ| over
/// max |reference| per tensor); the loss curve of the AdamW run within 1e-3.
/// For the 30-layer real model the gradients are compared, within the same
/// 1e-4, with a float64 PyTorch run (tools/make_fp64_grads.py, which also
/// lifts transformers' float32 islands — RMSNorm, softmax, rotary, loss — to
/// float64): Loft's are at most 2.2e-5 from it, PyTorch's own float32
/// gradients 2.4e-4 (two float32 implementations differ by more than either
/// differs from exact arithmetic, so they are not compared with each other).
final class PEFTExactnessTests: XCTestCase {
    /// A path to a tiny model, or (for the real model) an object naming the GGUF.
    enum Base: Decodable {
        case path(String), gguf
        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let s = try? c.decode(String.self) { self = .path(s) } else { self = .gguf }
        }
    }

    struct Expected: Decodable {
        struct Steps: Decodable { let lr: Double, weight_decay: Double, max_grad_norm: Double, losses: [Double] }
        let base: Base
        let input_ids: [[Int32]]
        let labels: [[Int32]]
        let loss: Double
        let steps: Steps
    }

    func load(_ name: String) throws -> (LlamaModel, Expected, URL) {
        let dir = TestPaths.fixtures.appendingPathComponent(name)
        let expected = try JSONDecoder().decode(Expected.self, from: Data(contentsOf: dir.appendingPathComponent("expected.json")))
        let base: String
        switch expected.base {
        case .gguf: base = TestPaths.smolLM2
        case .path(let p): base = TestPaths.repoRoot.appendingPathComponent(p).path
        }
        let (model, _) = try ModelLoader.load(base)
        try PEFTAdapter.load(dir.appendingPathComponent("initial_adapter").path, into: model)
        return (model, expected, dir)
    }

    func microBatch(_ e: Expected) -> MicroBatch {
        MicroBatch(sequences: zip(e.input_ids, e.labels).map { ($0, $1) })
    }

    func assertClose(_ got: [Float], _ want: [Float], _ what: String, tolerance: Double = 1e-4) {
        XCTAssertEqual(got.count, want.count, what)
        let scale = Double(want.map { abs($0) }.max() ?? 0)
        let err = Double(zip(got, want).map { abs($0 - $1) }.max() ?? 0)
        XCTAssertLessThanOrEqual(err, tolerance * max(scale, 1e-12), "\(what): max |Δ| \(err), max |ref| \(scale)")
    }

    func checkOneStep(_ name: String, checkpointing: Bool = false, gradients: String = "grads.safetensors",
                      tolerance: Double = 1e-4) throws {
        let (model, expected, dir) = try load(name)
        let mb = microBatch(expected)
        let step = TrainingStep(model: model, gradientCheckpointing: checkpointing)
        let lossSum = step.accumulate(mb, gradScale: 1 / Float(mb.targetCount))
        let loss = lossSum / Double(mb.targetCount)
        XCTAssertEqual(loss, expected.loss, accuracy: 1e-5 * abs(expected.loss), name)
        let grads = try SafetensorsCheckpoint(path: dir.appendingPathComponent(gradients).path)
        var checked = 0
        for slot in model.adapterSlots {
            assertClose(slot.lora.gradA!.toArray(), try grads.floats(named: slot.peftPrefix + ".lora_A.weight"),
                        "\(name) \(slot.peftPrefix) A", tolerance: tolerance)
            assertClose(slot.lora.gradB!.toArray(), try grads.floats(named: slot.peftPrefix + ".lora_B.weight"),
                        "\(name) \(slot.peftPrefix) B", tolerance: tolerance)
            checked += 2
            if let gM = slot.lora.gradMagnitude {
                assertClose(gM.toArray(), try grads.floats(named: slot.peftPrefix + ".lora_magnitude_vector"),
                            "\(name) \(slot.peftPrefix) magnitude", tolerance: tolerance)
                checked += 1
            }
        }
        for (key, weight) in model.fullyTrainedWeights {
            assertClose(weight.gradient!.toArray(), try grads.floats(named: key), "\(name) \(key)", tolerance: tolerance)
            checked += 1
        }
        XCTAssertEqual(checked, grads.tensorNames.count, "every PEFT gradient has a Loft twin")
    }

    func testOneStepTinyLlama() throws { try checkOneStep("tiny_llama") }
    func testOneStepTinyLlamaWithCheckpointing() throws { try checkOneStep("tiny_llama", checkpointing: true) }
    func testOneStepTinyQwen3() throws { try checkOneStep("tiny_qwen3") }
    func testOneStepTinyGemma3() throws { try checkOneStep("tiny_gemma3") }
    func testOneStepTinyGemma3WithCheckpointing() throws { try checkOneStep("tiny_gemma3", checkpointing: true) }
    /// Gemma 2: both soft-caps (attention scores and logits) in the backward.
    func testOneStepTinyGemma2() throws { try checkOneStep("tiny_gemma2") }
    /// Phi-3: LoRA on the fused qkv_proj and gate_up_proj (one A shared by q, k
    /// and v), LongRoPE's long factors (16 tokens > original 14).
    func testOneStepTinyPhi3() throws { try checkOneStep("tiny_phi3") }
    func testOneStepTinyPhi3WithCheckpointing() throws { try checkOneStep("tiny_phi3", checkpointing: true) }
    /// Phi-4-mini's shape: RoPE turns 12 of each head's 16 dimensions; tied embeddings.
    func testOneStepTinyPhi4Mini() throws { try checkOneStep("tiny_phi4_mini") }
    /// Mixture of experts: LoRA on the attention, gradients through the frozen
    /// experts and the router's probabilities (Qwen3-MoE without top-k
    /// renormalisation and with a dense layer; Mixtral renormalised).
    func testOneStepTinyQwen3MoE() throws { try checkOneStep("tiny_qwen3_moe") }
    func testOneStepTinyQwen3MoEWithCheckpointing() throws { try checkOneStep("tiny_qwen3_moe", checkpointing: true) }
    func testOneStepTinyMixtral() throws { try checkOneStep("tiny_mixtral") }
    func testOneStepRSLoRAOnSomeModules() throws { try checkOneStep("tiny_llama_rslora") }

    /// - finalWeights: also compare the adapter after the run. Adam moves every
    ///   weight by about lr per step whatever the size of its gradient, so
    ///   entries whose gradients are rounding noise land anywhere in ±lr·steps;
    ///   that check is only meaningful where gradients are well above noise.
    func checkLossCurve(_ name: String, finalWeights: Bool = true) throws {
        let (model, expected, dir) = try load(name)
        let mb = microBatch(expected)
        let step = TrainingStep(model: model)
        let optimizer = AdapterOptimizer(model: model, weightDecay: Float(expected.steps.weight_decay))
        var losses: [Double] = []
        for _ in expected.steps.losses {
            losses.append(step.accumulate(mb, gradScale: 1 / Float(mb.targetCount)) / Double(mb.targetCount))
            optimizer.update(lr: Float(expected.steps.lr), maxGradNorm: Float(expected.steps.max_grad_norm))
        }
        for (i, (got, want)) in zip(losses, expected.steps.losses).enumerated() {
            XCTAssertEqual(got, want, accuracy: 1e-3 * abs(want), "\(name) step \(i)")
        }
        guard finalWeights else { return }
        let final = try SafetensorsCheckpoint(path: dir.appendingPathComponent("final_adapter.safetensors").path)
        for p in optimizer.parameters {
            assertClose(p.value.toArray(), try final.floats(named: p.name), "\(name) final \(p.name)", tolerance: 1e-3)
        }
    }

    // DoRA (use_dora): the gradients of A, B and the magnitude; Qwen2's q/k/v have a bias.
    func testOneStepTinyLlamaDoRA() throws { try checkOneStep("tiny_llama_dora") }
    func testOneStepTinyLlamaDoRAWithCheckpointing() throws { try checkOneStep("tiny_llama_dora", checkpointing: true) }
    func testOneStepTinyQwen2DoRA() throws { try checkOneStep("tiny_qwen2_dora") }
    func testLossCurveTinyLlamaDoRA() throws { try checkLossCurve("tiny_llama_dora") }
    func testLossCurveTinyQwen2DoRA() throws { try checkLossCurve("tiny_qwen2_dora") }

    // modules_to_save on a tied model: PEFT trains an independent copy of each listed module.
    func testOneStepTiedFullHeadAndEmbedding() throws { try checkOneStep("tiny_llama_tied_full_head_embed") }
    func testOneStepTiedFullHeadAndEmbeddingWithCheckpointing() throws {
        try checkOneStep("tiny_llama_tied_full_head_embed", checkpointing: true)
    }
    func testOneStepTiedFullHeadOnly() throws { try checkOneStep("tiny_llama_tied_full_head") }
    func testLossCurveTiedFullHeadAndEmbedding() throws { try checkLossCurve("tiny_llama_tied_full_head_embed") }
    func testLossCurveTiedFullHeadOnly() throws { try checkLossCurve("tiny_llama_tied_full_head") }

    func testOneStepRealSmolLM2() throws { try checkOneStep("smollm2", gradients: "grads_fp64.safetensors") }

    func testLossCurveTinyLlama() throws { try checkLossCurve("tiny_llama") }
    func testLossCurveTinyQwen3() throws { try checkLossCurve("tiny_qwen3") }
    func testLossCurveTinyGemma3() throws { try checkLossCurve("tiny_gemma3") }
    func testLossCurveTinyGemma2() throws { try checkLossCurve("tiny_gemma2") }
    func testLossCurveTinyPhi3() throws { try checkLossCurve("tiny_phi3") }
    func testLossCurveTinyPhi4Mini() throws { try checkLossCurve("tiny_phi4_mini") }
    func testLossCurveTinyQwen3MoE() throws { try checkLossCurve("tiny_qwen3_moe") }
    func testLossCurveTinyMixtral() throws { try checkLossCurve("tiny_mixtral") }
    func testLossCurveRealSmolLM2() throws { try checkLossCurve("smollm2", finalWeights: false) }
}
