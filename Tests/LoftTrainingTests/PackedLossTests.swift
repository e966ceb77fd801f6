import Foundation
import XCTest
import LoftData
import LoftModels
import LoftTokenizers
@testable import LoftTraining

/// Real data through the real model: identity.json rendered with SmolLM2's
/// template, several examples packed into one micro-batch give the same
/// per-example losses as each example run alone (positions restart and no
/// attention crosses a boundary). Tolerance 1e-4 relative per example.
final class PackedLossTests: XCTestCase {
    func testPackedBatchEqualsSamplesRunAlone() throws {
        let tokenizer = try Tokenizer.load(source: TestPaths.smolLM2)
        var options = DataOptions(sequenceLen: 256)
        options.seed = 1
        let spec = DatasetSpec(path: TestPaths.shared.appendingPathComponent("datasets/identity.json").path, type: "alpaca",
                               variables: ["name": "Loft Assistant", "author": "the Loft project"])
        let data = try DatasetBuilder(tokenizer: tokenizer, options: options).build([spec])
        let examples = Array(data.train.prefix(3))
        XCTAssertEqual(examples.count, 3)
        let (model, _) = try ModelLoader.load(TestPaths.smolLM2)
        let step = TrainingStep(model: model)

        let alone = examples.map { e in step.loss(MicroBatch(ids: e.ids, labels: e.labels)) }
        // Per-example losses of the packed batch: run the packed row, then read
        // each example's share by masking the others' labels.
        let packed = MicroBatch(sequences: examples.map { ($0.ids, $0.labels) })
        for (k, e) in examples.enumerated() {
            let masked = MicroBatch(sequences: examples.enumerated().map { j, x in
                (x.ids, j == k ? x.labels : [Int32](repeating: -100, count: x.labels.count))
            })
            XCTAssertEqual(masked.segments, packed.segments)
            let lossPacked = step.loss(masked)
            XCTAssertEqual(lossPacked, alone[k], accuracy: 1e-4 * abs(alone[k]), "example \(k) (\(e.ids.count) tokens)")
        }
        XCTAssertEqual(step.loss(packed), alone.reduce(0, +), accuracy: 1e-4 * alone.reduce(0, +))
    }
}
