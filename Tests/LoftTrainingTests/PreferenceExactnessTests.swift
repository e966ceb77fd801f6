import Foundation
import XCTest
import LoftData
import LoftFormats
import LoftModels
import LoftTensors
@testable import LoftTraining

/// One preference step against TRL 1.16 + PEFT (fixtures from
/// tools/make_dpo_fixtures.py): the loss, every metric TRL logs and every
/// LoRA gradient, within 1e-4 relative (gradients: max |Δ| over max |ref|
/// per tensor, as PEFTExactnessTests). The starting adapters are non-zero
/// (lora_B ~ N(0, 0.02²)), so the gradients of A and B are both tested.
final class PreferenceExactnessTests: XCTestCase {
    struct Example: Decodable { let prompt: [Int32], chosen: [Int32], rejected: [Int32]; let label: Bool? }
    struct Config: Decodable {
        let beta: Double?, simpo_gamma: Double?, cpo_alpha: Double?, desirable_weight: Double?, undesirable_weight: Double?
    }
    struct Expected: Decodable {
        let `case`: String
        let loss: Double
        let metrics: [String: Double]
        let examples: [Example]
        let reference: String
        let loss_type: String?
        let beta: Double?
        let label_smoothing: Double?
        let config: Config?
        /// Another case's starting adapter, relative to this case (the SmolLM2 cases share one).
        let initial_adapter: String?
    }

    static func objective(_ e: Expected) -> PreferenceObjective {
        switch e.case {
        case "orpo": return ORPO(alpha: e.config?.beta ?? 0.1)
        case "simpo", "cpo_simpo": return SimPO(beta: e.config!.beta!, gamma: e.config!.simpo_gamma!, cpoAlpha: e.config!.cpo_alpha ?? 0)
        case "kto": return KTO(beta: e.config!.beta!, desirableWeight: e.config!.desirable_weight!, undesirableWeight: e.config!.undesirable_weight!)
        default:
            let beta = e.beta!
            switch e.loss_type! {
            case "hinge": return DPOHinge(beta: beta)
            case "ipo": return IPO(beta: beta)
            case "robust": return RobustDPO(beta: beta, labelSmoothing: e.label_smoothing!)
            default: return DPOSigmoid(beta: beta)
            }
        }
    }

    func assertClose(_ got: [Float], _ want: [Float], _ what: String, tolerance: Double = 1e-4) {
        XCTAssertEqual(got.count, want.count, what)
        let scale = Double(want.map { abs($0) }.max() ?? 0)
        let err = Double(zip(got, want).map { abs($0 - $1) }.max() ?? 0)
        XCTAssertLessThanOrEqual(err, tolerance * max(scale, 1e-12), "\(what): max |Δ| \(err), max |ref| \(scale)")
    }

    /// Runs the fixture's step; returns Loft's loss and metrics.
    @discardableResult
    func check(_ name: String, base: String? = nil, checkpointing: Bool = false, gradients: String = "grads.safetensors",
               tolerance: Double = 1e-4) throws -> (Double, PreferenceMetrics) {
        let dir = TestPaths.fixtures.appendingPathComponent("preference/\(name)")
        let e = try JSONDecoder().decode(Expected.self, from: Data(contentsOf: dir.appendingPathComponent("expected.json")))
        let (model, _) = try ModelLoader.load(base ?? TestPaths.repoRoot.appendingPathComponent("Tests/LoftModelsTests/Fixtures/tiny/llama").path)
        let sft = dir.appendingPathComponent("sft_adapter").path
        if FileManager.default.fileExists(atPath: sft) {
            // base_adapter: the SFT adapter frozen under the trained one.
            try PEFTAdapter.load(sft, into: model)
            try model.freezeAdapters()
        }
        try PEFTAdapter.load(dir.appendingPathComponent(e.initial_adapter ?? "initial_adapter").standardized.path, into: model)
        let reference = ReferencePolicy(model: model, kind: e.reference == "starting_adapter" ? .startingAdapter : .adapterDisabled)
        let step = PreferenceStep(step: TrainingStep(model: model, gradientCheckpointing: checkpointing), objective: Self.objective(e), reference: reference)
        let examples = e.examples.map { PreferenceExample(prompt: $0.prompt, chosen: $0.chosen, rejected: $0.rejected, label: $0.label) }
        let (loss, metrics) = step.accumulate(examples, gradScale: 1)
        XCTAssertEqual(loss, e.loss, accuracy: tolerance * max(abs(e.loss), 1e-3), "\(name) loss")
        // Rewards β·(log π − log ref) and KTO's KL are differences of log-prob sums: each sum is exact to
        // `tolerance` relative, so their difference is compared on the scale of the sums it subtracts.
        let logps = max(abs(e.metrics["logps/chosen"] ?? 0), abs(e.metrics["logps/rejected"] ?? 0))
        let beta = e.beta ?? e.config?.beta ?? 1
        for (key, want) in e.metrics {
            guard let got = metrics.values[key] else { XCTFail("\(name): Loft does not log \(key)"); continue }
            var scale = max(abs(want), 1e-2)
            if e.reference != "none" && ["rewards/chosen", "rewards/rejected", "rewards/margins"].contains(key) { scale = max(scale, beta * logps) }
            if key == "kl" { scale = max(scale, logps) }
            XCTAssertEqual(got, want, accuracy: tolerance * scale, "\(name) \(key)")
        }
        let grads = try SafetensorsCheckpoint(path: dir.appendingPathComponent(gradients).path)
        var checked = 0
        for slot in model.adapterSlots {
            assertClose(slot.lora.gradA!.toArray(), try grads.floats(named: slot.peftPrefix + ".lora_A.weight"), "\(name) \(slot.peftPrefix) A", tolerance: tolerance)
            assertClose(slot.lora.gradB!.toArray(), try grads.floats(named: slot.peftPrefix + ".lora_B.weight"), "\(name) \(slot.peftPrefix) B", tolerance: tolerance)
            checked += 2
        }
        XCTAssertEqual(checked, grads.tensorNames.count, "every PEFT gradient has a Loft twin")
        return (loss, metrics)
    }

    func testDPOSigmoid() throws { try check("tiny_dpo_sigmoid") }
    func testDPOSigmoidWithCheckpointing() throws { try check("tiny_dpo_sigmoid", checkpointing: true) }
    func testDPOHinge() throws { try check("tiny_dpo_hinge") }
    func testIPO() throws { try check("tiny_dpo_ipo") }
    func testRobustDPO() throws { try check("tiny_dpo_robust") }
    func testORPO() throws { try check("tiny_orpo") }
    func testSimPO() throws { try check("tiny_simpo") }
    func testCPOSimPO() throws { try check("tiny_cpo_simpo") }
    func testKTO() throws { try check("tiny_kto") }

    /// A fresh LoRA (B = 0) is its own reference: loss ln 2, every reward 0.
    func testZeroInitIsLn2() throws {
        let (loss, metrics) = try check("tiny_dpo_zero_init")
        XCTAssertEqual(loss, log(2), accuracy: 1e-12)
        XCTAssertEqual(metrics.values["rewards/margins"], 0)
    }

    /// Continuing from an SFT adapter: the frozen starting adapter is the reference (TRL's "ref" adapter),
    /// so step 0 is ln 2 with non-zero gradients — not the base, which would give a large margin at once.
    func testFromSFTAdapterStartsAtLn2() throws {
        let (loss, metrics) = try check("tiny_dpo_from_sft")
        XCTAssertEqual(loss, log(2), accuracy: 1e-9)
        XCTAssertEqual(metrics.values["rewards/chosen"] ?? 1, 0, accuracy: 1e-12)
    }

    /// base_adapter: a new LoRA over the frozen SFT adapter against TRL on the merged SFT model.
    func testDPOOverFrozenSFTAdapter() throws { try check("tiny_dpo_over_sft") }
    func testDPOOverFrozenSFTAdapterWithCheckpointing() throws { try check("tiny_dpo_over_sft", checkpointing: true) }
    func testDPOOverFrozenSFTAdapterStartsAtLn2() throws {
        let (loss, _) = try check("tiny_dpo_over_sft_zero_init")
        XCTAssertEqual(loss, log(2), accuracy: 1e-12)
    }

    /// The real model: loss and metrics against TRL's float32 step, gradients against the same step in
    /// float64 (PEFTExactnessTests explains why 30 float32 layers are compared with exact arithmetic).
    func testRealSmolLM2DPO() throws {
        try check("smollm2_dpo_sigmoid", base: TestPaths.smolLM2, gradients: "grads_fp64.safetensors")
    }

    /// Every other loss on the real model, from the same starting adapter and rows; the float64
    /// gradients come from TRL's own loss code run in float64 (tools/make_dpo_fixtures.py).
    func testRealSmolLM2EveryOtherLoss() throws {
        for name in ["smollm2_dpo_hinge", "smollm2_dpo_ipo", "smollm2_dpo_robust", "smollm2_orpo", "smollm2_simpo",
                     "smollm2_cpo_simpo", "smollm2_kto"] {
            try check(name, base: TestPaths.smolLM2, gradients: "grads_fp64.safetensors")
        }
    }
}
