import Foundation
import XCTest
import LoftFormats
import LoftModels
import LoftTensors
@testable import LoftTraining

/// bf16/fp16 compute in training, and fp16's dynamic loss scaler.
///
/// The tiny Llama's LoRA gradients in bf16 and fp16 compute against PyTorch +
/// PEFT under `torch.autocast("cpu", dtype=…)` (tools/make_amp_fixtures.py)
/// and against its fp32 gradients. Autocast also rounds each matmul's
/// *output* (and so the activations it keeps) to the low precision, which
/// Loft's f32-output GEMMs do not, so the two are different roundings of the
/// same computation and agree within the low precision's resolution only.
/// Measured (max |Δ| over max |reference|, worst tensor): bf16 3.6e-2 from
/// autocast, 2.2e-2 from fp32, while autocast is 2.9e-2 from fp32; fp16
/// 3.6e-3, 2.9e-3 and 3.8e-3. Tolerances: 5e-2 for bf16 (8-bit mantissa),
/// 5e-3 for fp16 (11-bit), against both; and at least 5e-4 away from fp32,
/// which shows the reduced path is taken.
final class MixedPrecisionTests: XCTestCase {
    func config(_ yaml: String) throws -> TrainConfig { try TrainConfig.fromYAML(yaml) }

    func testConfigPicksComputePrecision() throws {
        XCTAssertEqual(try config("").computePrecision, .fp32, "default: fp32, the quickstart's numbers")
        var c = try config("bf16: true\n")
        XCTAssertEqual(c.computePrecision, .bf16)
        XCTAssertEqual(c.baseWeights.kind, .bf16, "bf16: true still stores the base in bf16")
        c = try config("fp16: true\n")
        XCTAssertEqual(c.computePrecision, .fp16)
        XCTAssertEqual(c.baseWeights.kind, .f32)
        XCTAssertFalse(c.ignoredKeys.contains("fp16"))
        XCTAssertEqual(try config("bf16: auto\n").computePrecision, .fp32, "auto: on the CPU Loft keeps fp32")
        XCTAssertEqual(try config("adapter: qlora\nload_in_4bit: true\nbnb_4bit_compute_dtype: bfloat16\n").computePrecision, .bf16)
        XCTAssertEqual(try config("adapter: qlora\nload_in_4bit: true\nbnb_4bit_compute_dtype: fp16\nfp16: true\n").computePrecision, .fp16)
        XCTAssertEqual(try config("adapter: qlora\nload_in_4bit: true\n").computePrecision, .fp32, "bitsandbytes' default compute dtype is fp32")
        XCTAssertEqual(try config("bnb_4bit_compute_dtype: bf16\n").computePrecision, .fp32, "the 4-bit key alone does not apply to an f32 base")
    }

    func testConflictingPrecisionKeysAreRefused() {
        XCTAssertThrowsError(try config("bf16: true\nfp16: true\n")) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("bf16: true") && text.contains("fp16: true"), text)
        }
        XCTAssertThrowsError(try config("adapter: qlora\nload_in_4bit: true\nbnb_4bit_compute_dtype: fp32\nbf16: true\n")) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("bf16: true") && text.contains("bnb_4bit_compute_dtype: fp32"), text)
        }
    }

    // MARK: the tiny model against autocast

    let fixture = TestPaths.fixtures.appendingPathComponent("tiny_llama")

    /// The tiny Llama with the fixture's initial adapter, on a backend computing in `precision`, and its batch.
    func tinyModel(_ precision: ComputePrecision) throws -> (LlamaModel, MicroBatch) {
        let expected = try JSONDecoder().decode(PEFTExactnessTests.Expected.self,
                                                from: Data(contentsOf: fixture.appendingPathComponent("expected.json")))
        guard case .path(let p) = expected.base else { throw TrainingError("the fixture names the tiny model's directory") }
        let (model, _) = try ModelLoader.load(TestPaths.repoRoot.appendingPathComponent(p).path,
                                              backend: CPUBackend(computePrecision: precision))
        try PEFTAdapter.load(fixture.appendingPathComponent("initial_adapter").path, into: model)
        return (model, MicroBatch(sequences: zip(expected.input_ids, expected.labels).map { ($0, $1) }))
    }

    /// Every LoRA gradient by PEFT name.
    func gradients(_ model: LlamaModel) -> [String: [Float]] {
        var out: [String: [Float]] = [:]
        for slot in model.adapterSlots {
            out[slot.peftPrefix + ".lora_A.weight"] = slot.lora.gradA!.toArray()
            out[slot.peftPrefix + ".lora_B.weight"] = slot.lora.gradB!.toArray()
        }
        return out
    }

    /// The largest per-tensor max |Δ| / max |reference| over all tensors.
    func worstRelative(_ got: [String: [Float]], _ want: [String: [Float]]) -> Double {
        XCTAssertEqual(Set(got.keys), Set(want.keys))
        return got.keys.map { name -> Double in
            let g = got[name]!, w = want[name]!
            let scale = Double(w.map { abs($0) }.max() ?? 0), err = Double(zip(g, w).map { abs($0 - $1) }.max() ?? 0)
            return err / max(scale, 1e-30)
        }.max() ?? .infinity
    }

    func fixtureGradients(_ file: String) throws -> [String: [Float]] {
        let st = try SafetensorsCheckpoint(path: fixture.appendingPathComponent(file).path)
        var out: [String: [Float]] = [:]
        for name in st.tensorNames { out[name] = try st.floats(named: name) }
        return out
    }

    func checkAgainstAutocast(_ precision: ComputePrecision, tolerance: Double) throws {
        let (model, mb) = try tinyModel(precision)
        _ = TrainingStep(model: model).accumulate(mb, gradScale: 1 / Float(mb.targetCount))
        let got = gradients(model)
        let autocast = worstRelative(got, try fixtureGradients("grads_autocast_\(precision).safetensors"))
        let fp32 = worstRelative(got, try fixtureGradients("grads.safetensors"))
        print("\(precision) compute: worst LoRA-gradient error vs autocast \(autocast), vs fp32 \(fp32)")
        XCTAssertLessThanOrEqual(autocast, tolerance, "\(precision) vs torch.autocast")
        XCTAssertLessThanOrEqual(fp32, tolerance, "\(precision) vs fp32")
        XCTAssertGreaterThan(fp32, 5e-4, "\(precision) gradients equal fp32's: the reduced precision is not applied")
    }

    func testTinyLlamaStepInBF16MatchesAutocast() throws { try checkAgainstAutocast(.bf16, tolerance: 5e-2) }
    func testTinyLlamaStepInFP16MatchesAutocast() throws { try checkAgainstAutocast(.fp16, tolerance: 5e-3) }

    // MARK: loss scaling

    /// fp16 gradients of loss · 2¹⁶, unscaled, equal those of the loss itself
    /// within fp16's resolution (the scale is a power of two: only the
    /// rounding of values near fp16's subnormal range changes).
    func testLossScaledGradientsEqualUnscaledOnes() throws {
        let (model, mb) = try tinyModel(.fp16)
        let step = TrainingStep(model: model)
        _ = step.accumulate(mb, gradScale: 1 / Float(mb.targetCount))
        let plain = gradients(model)
        let optimizer = AdapterOptimizer(model: model)
        optimizer.zeroGradients()
        let scale = LossScaler().scale
        _ = step.accumulate(mb, gradScale: Float(scale) / Float(mb.targetCount))
        let scaled = gradients(model).mapValues { $0.map { $0 / Float(scale) } }
        let err = worstRelative(scaled, plain)
        print("fp16: loss-scaled (2^16) vs unscaled gradients, worst relative \(err)")
        XCTAssertLessThanOrEqual(err, 2e-3)
    }

    func testScalerGrowsAfterTheIntervalAndBacksOffOnOverflow() {
        var s = LossScaler(growthInterval: 3)
        XCTAssertEqual(s.scale, 65536, "GradScaler's init_scale")
        for _ in 0 ..< 2 { s.update(foundNonFinite: false) }
        XCTAssertEqual(s.scale, 65536)
        s.update(foundNonFinite: false)
        XCTAssertEqual(s.scale, 131072, "doubles after growth_interval clean steps")
        XCTAssertEqual(s.growthTracker, 0)
        s.update(foundNonFinite: false)
        s.update(foundNonFinite: true)
        XCTAssertEqual(s.scale, 65536, "halves on overflow")
        XCTAssertEqual(s.growthTracker, 0, "an overflow restarts the clean-step count")
        XCTAssertEqual(s.skippedSteps, 1)
        XCTAssertEqual(LossScaler().growthInterval, 2000)
        var top = LossScaler(initialScale: Double(Float.greatestFiniteMagnitude), growthInterval: 1)
        top.update(foundNonFinite: false)
        XCTAssertEqual(top.scale, Double(Float.greatestFiniteMagnitude), "never grows to inf")
    }

    /// An inf gradient (injected) skips the update: no parameter, moment or
    /// step count changes, and the gradients are cleared for the next step.
    func testInfiniteGradientSkipsTheUpdate() throws {
        let (model, mb) = try tinyModel(.fp16)
        let step = TrainingStep(model: model)
        let optimizer = AdapterOptimizer(model: model)
        _ = step.accumulate(mb, gradScale: 1024 / Float(mb.targetCount))
        let before = optimizer.parameters.map { $0.value.toArray() }
        model.adapterSlots[3].lora.gradB!.floats[5] = .infinity
        let skipped = optimizer.update(lr: 1e-2, maxGradNorm: 1, lossScale: 1024)
        XCTAssertTrue(skipped.skipped)
        XCTAssertFalse(skipped.gradNorm.isFinite)
        XCTAssertEqual(optimizer.step, 0)
        XCTAssertEqual(optimizer.parameters.map { $0.value.toArray() }, before, "no parameter moved")
        XCTAssertTrue(optimizer.parameters.allSatisfy { $0.moment1.toArray().allSatisfy { $0 == 0 } }, "no moment moved")
        XCTAssertEqual(optimizer.gradientNorm(), 0, "gradients cleared")

        _ = step.accumulate(mb, gradScale: 1024 / Float(mb.targetCount))
        let taken = optimizer.update(lr: 1e-2, maxGradNorm: 1, lossScale: 1024)
        XCTAssertFalse(taken.skipped)
        XCTAssertTrue(taken.gradNorm.isFinite && taken.gradNorm > 0)
        XCTAssertEqual(optimizer.step, 1)
        XCTAssertNotEqual(optimizer.parameters.map { $0.value.toArray() }, before)
    }

    /// An fp16 run whose scale starts too high (2¹⁹: backwards overflow fp16
    /// and are skipped) and grows every 2 clean steps; cut at
    /// step 5 and resumed from its step-3 checkpoint, it follows the
    /// uninterrupted run bit for bit, scale and skips included.
    func testFP16RunResumesItsScalerExactly() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("loft-amp-resume-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        func trainer(_ out: String) throws -> Trainer {
            var c = TrainerResumeTests.config(out)
            c.computePrecision = .fp16
            let t = try TrainerResumeTests.trainer(c, backend: CPUBackend(computePrecision: .fp16))
            t.state.lossScaler = LossScaler(initialScale: 0x1p19, growthInterval: 2)
            return t
        }
        var events: [Trainer.Event] = []
        let fullTrainer = try trainer(root + "/full")
        fullTrainer.onEvent = { if $0.kind == .step { events.append($0) } }
        let full = try fullTrainer.run()
        let scales = events.map { $0.lossScale ?? 0 }, skips = events.map(\.skipped)
        print("fp16 run: loss scales \(scales), skipped \(skips)")
        XCTAssertTrue(skips.contains(true), "the scale starts high enough to overflow fp16")
        XCTAssertTrue(zip(scales, scales.dropFirst()).contains { $1 > $0 }, "the scale grows after 2 clean steps")
        XCTAssertEqual(full.lossScaler?.skippedSteps, skips.filter { $0 }.count)
        XCTAssertTrue(full.losses.allSatisfy(\.isFinite))
        // HF Trainer steps its LR scheduler only after an update that was taken.
        for i in events.indices.dropLast() where events[i].skipped {
            XCTAssertEqual(events[i + 1].learningRate, events[i].learningRate, "the schedule waits on a skipped step")
        }

        let first = try trainer(root + "/cut")
        var seen = 0
        first.onEvent = { e in if e.kind == .step { seen += 1; if seen == 5 { first.stopRequested = true } } }
        try first.run()
        try FileManager.default.removeItem(atPath: root + "/cut/checkpoint-5")
        let second = try trainer(root + "/cut")
        XCTAssertEqual(try second.resume(), root + "/cut/checkpoint-3")
        XCTAssertEqual(second.optimizer.step, second.state.optimizerSteps)
        let resumed = try second.run()
        XCTAssertEqual(resumed.losses.map(\.bitPattern), full.losses.map(\.bitPattern), "bit-for-bit equal losses after resuming")
        XCTAssertEqual(resumed.lossScaler, full.lossScaler)
    }
}
