import Foundation
import XCTest
@testable import LoftTraining

/// eval_metrics / metric_for_best_model: the config keys, and the trainer
/// keeping the best checkpoint by a generation metric.
final class BestModelMetricTests: XCTestCase {
    func testConfigKeys() throws {
        let c = try TrainConfig.fromYAML("eval_metrics: [rougeL, contains]\nmetric_for_best_model: eval_rougeL\neval_max_new_tokens: 32\n")
        XCTAssertEqual(c.evalMetrics, ["rougeL", "contains"])
        XCTAssertEqual(c.metricForBestModel, "eval_rougeL")
        XCTAssertEqual(c.evalMaxNewTokens, 32)
        XCTAssertThrowsError(try TrainConfig.fromYAML("eval_metrics: [contains]\nmetric_for_best_model: rougeL\n")) {
            XCTAssertTrue("\($0)".contains("add it to eval_metrics"), "\($0)")
        }
        XCTAssertNoThrow(try TrainConfig.fromYAML("metric_for_best_model: eval_loss\n"))
    }

    func run(greaterIsBetter: Bool?) throws -> (TrainerState, [[String: Double]]) {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("loft-best-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        var c = TrainerResumeTests.config(root)
        c.evalSteps = 1
        c.maxSteps = 4
        c.saveSteps = nil
        c.evalMetrics = ["rougeL"]
        c.metricForBestModel = "rougeL"
        c.greaterIsBetter = greaterIsBetter
        let trainer = try TrainerResumeTests.trainer(c)
        let scripted = [0.2, 0.5, 0.3, 0.4]
        var calls = 0
        trainer.generationMetrics = { _ in defer { calls += 1 }; return ["rougeL": scripted[calls]] }
        var seen: [[String: Double]] = []
        trainer.onEvent = { e in if e.kind == .eval { seen.append(e.metrics) } }
        return (try trainer.run(), seen)
    }

    func testBestCheckpointByGenerationMetric() throws {
        let (higher, seen) = try run(greaterIsBetter: nil)
        XCTAssertEqual(seen.map { $0["rougeL"]! }, [0.2, 0.5, 0.3, 0.4], "each eval event carries the metrics")
        XCTAssertEqual(higher.bestStep, 2)
        XCTAssertEqual(higher.bestMetric, 0.5)
        let (lower, _) = try run(greaterIsBetter: false)
        XCTAssertEqual(lower.bestStep, 1)
    }
}
