import Foundation
import XCTest
import LoftModels
@testable import LoftTraining

/// LoRA+: B's learning rate is `loraplus_lr_ratio` times A's. Checked on the
/// first AdamW step, whose update is known in closed form: with fresh moments
/// and no decay, Δθ = −lr·ĝ/(|ĝ| + eps) element by element (float64 reference).
final class LoRAPlusTests: XCTestCase {
    func testBLearnsRatioTimesFaster() throws {
        let dir = TestPaths.fixtures.appendingPathComponent("tiny_llama")
        let (model, _) = try ModelLoader.load(TestPaths.repoRoot.appendingPathComponent("Tests/LoftModelsTests/Fixtures/tiny/llama").path)
        try PEFTAdapter.load(dir.appendingPathComponent("initial_adapter").path, into: model)
        let ids: [Int32] = (0 ..< 16).map { Int32(($0 * 37 + 11) % 256) }
        let mb = MicroBatch(ids: ids, labels: ids)
        _ = TrainingStep(model: model).accumulate(mb, gradScale: 1 / Float(mb.targetCount))
        let (lr, ratio) = (1e-3, 16.0)
        let optimizer = AdapterOptimizer(model: model, weightDecay: 0, loraPlusRatio: Float(ratio))
        let before = optimizer.parameters.map { $0.value.toArray() }
        let grads = model.adapterSlots.flatMap { [$0.lora.gradA!.toArray(), $0.lora.gradB!.toArray()] }
        optimizer.update(lr: Float(lr), maxGradNorm: 0)
        for (i, p) in optimizer.parameters.enumerated() {
            let scale = p.name.hasSuffix("lora_B.weight") ? ratio : 1
            let after = p.value.toArray()
            var worst = 0.0
            for j in after.indices {
                let g = Double(grads[i][j])
                let expected = -lr * scale * g / (abs(g) + 1e-8)
                worst = max(worst, abs(Double(after[j]) - Double(before[i][j]) - expected))
            }
            XCTAssertLessThan(worst, 1e-6 * lr * scale * 100, "\(p.name): max deviation \(worst)")
        }
    }
}
