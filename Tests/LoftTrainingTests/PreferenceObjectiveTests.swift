import Foundation
import XCTest
import LoftFormats
import LoftModels
import LoftTensors
@testable import LoftTraining

/// Each objective's gradient against a float64 central difference of its own
/// loss, on fresh random log-probs; and the chunked log-prob piece against a
/// float64 log-softmax of the whole logits matrix.
final class PreferenceObjectiveTests: XCTestCase {
    func randomScores(pairs: Int, seed: UInt64, unpaired: Bool = false) -> SequenceScores {
        var rng = SplitMix64(seed: seed)
        func u(_ lo: Double, _ hi: Double) -> Double { lo + (hi - lo) * Double(rng.next() >> 11) / Double(1 << 53) }
        let n = unpaired ? pairs : 2 * pairs
        let tokens = (0 ..< n).map { _ in Int(u(3, 40)) }
        return SequenceScores(policy: tokens.map { -u(0.5, 3) * Double($0) }, reference: tokens.map { -u(0.5, 3) * Double($0) },
                              tokens: tokens, promptPolicy: (0 ..< n).map { _ in -u(5, 60) }, promptTokens: (0 ..< n).map { _ in Int(u(2, 30)) },
                              labels: (0 ..< n).map { $0 % 3 != 1 },
                              klPolicy: (0 ..< n).map { _ in -u(10, 60) }, klReference: (0 ..< n).map { _ in -u(10, 60) })
    }

    func checkGradient(_ o: PreferenceObjective, unpaired: Bool = false, file: StaticString = #filePath, line: UInt = #line) {
        for seed in UInt64(1) ... 4 {
            let s = randomScores(pairs: 3, seed: seed &* 77, unpaired: unpaired)
            let r = o.evaluate(s)
            XCTAssertTrue(r.loss.isFinite, "\(o.name) loss", file: file, line: line)
            for i in s.policy.indices {
                for prompt in [false, true] where !prompt || o.usesPromptLogProbs {
                    let h = 1e-5
                    var plus = s, minus = s
                    if prompt { plus.promptPolicy[i] += h; minus.promptPolicy[i] -= h } else { plus.policy[i] += h; minus.policy[i] -= h }
                    let numeric = (o.evaluate(plus).loss - o.evaluate(minus).loss) / (2 * h)
                    let analytic = prompt ? r.dPromptPolicy[i] : r.dPolicy[i]
                    XCTAssertEqual(analytic, numeric, accuracy: 1e-6 * max(1, abs(numeric)), "\(o.name) seed \(seed) d\(prompt ? "prompt" : "")[\(i)]", file: file, line: line)
                }
            }
        }
    }

    func testDPOSigmoidGradient() { checkGradient(DPOSigmoid(beta: 0.1)) }
    func testDPOHingeGradient() { checkGradient(DPOHinge(beta: 0.05)) }
    func testIPOGradient() { checkGradient(IPO(beta: 0.1)) }
    func testRobustDPOGradient() { checkGradient(RobustDPO(beta: 0.1, labelSmoothing: 0.2)) }
    func testORPOGradient() { checkGradient(ORPO(alpha: 0.3)) }
    func testSimPOGradient() { checkGradient(SimPO(beta: 2, gamma: 0.5, cpoAlpha: 0.4)) }
    func testKTOGradient() { checkGradient(KTO(beta: 0.1, desirableWeight: 1, undesirableWeight: 1.3), unpaired: true) }

    /// Robust DPO with ε = 0 is sigmoid DPO; at Δ = 0 every DPO-family loss has its textbook value.
    func testLimits() {
        let s = randomScores(pairs: 4, seed: 9)
        XCTAssertEqual(RobustDPO(beta: 0.1, labelSmoothing: 0).evaluate(s).loss, DPOSigmoid(beta: 0.1).evaluate(s).loss, accuracy: 1e-12)
        let zero = SequenceScores(policy: [-5, -7], reference: [-5, -7], tokens: [4, 6])
        XCTAssertEqual(DPOSigmoid(beta: 0.1).evaluate(zero).loss, log(2), accuracy: 1e-15)
        XCTAssertEqual(DPOHinge(beta: 0.1).evaluate(zero).loss, 1, accuracy: 1e-15)
        XCTAssertEqual(IPO(beta: 0.1).evaluate(zero).loss, 25, accuracy: 1e-12)
        XCTAssertEqual(DPOSigmoid(beta: 0.1).evaluate(zero).metrics.values["rewards/accuracies"], 0)
    }

    /// Chunked log-probs and their hidden-state gradient against float64 over the whole logits matrix.
    func testSequenceLogProbsAgainstFloat64() throws {
        let (model, _) = try ModelLoader.load(TestPaths.repoRoot.appendingPathComponent("Tests/LoftModelsTests/Fixtures/tiny/llama").path)
        var rng = SplitMix64(seed: 2024)
        let n = 23, h = model.config.hiddenSize, v = model.config.vocabSize
        let hiddenValues = (0 ..< n * h).map { _ in Float(Double(rng.next() >> 11) / Double(1 << 53) * 4 - 2) }
        let hidden = model.backend.upload(hiddenValues, shape: [n, h])
        var targets = (0 ..< n).map { _ in Int32(rng.next() % UInt64(v)) }
        targets[4] = -100
        let spans = [SequenceLogProbs.Span(0 ..< 7), .init(7 ..< 8), .init(10 ..< 23)]
        let lp = SequenceLogProbs.compute(model: model, hidden: hidden, targets: targets, spans: spans, chunkRows: 3, withGradient: true)
        let w = model.lmHead.toArray()
        let coef = [0.7, -1.3, 0.25]
        var want = [Double](repeating: 0, count: 3)
        var wantGrad = [Double](repeating: 0, count: n * h)
        for (k, span) in spans.enumerated() {
            for r in span.rows where targets[r] >= 0 {
                var logits = [Double](repeating: 0, count: v)
                for j in 0 ..< v { for d in 0 ..< h { logits[j] += Double(hiddenValues[r * h + d]) * Double(w[j * h + d]) } }
                let m = logits.max()!
                let lse = m + log(logits.reduce(0) { $0 + exp($1 - m) })
                want[k] += logits[Int(targets[r])] - lse
                // ∂(coef·logp)/∂h = coef·(onehot − softmax)·W
                for j in 0 ..< v {
                    let g = coef[k] * ((j == Int(targets[r]) ? 1 : 0) - exp(logits[j] - lse))
                    for d in 0 ..< h { wantGrad[r * h + d] += g * Double(w[j * h + d]) }
                }
            }
        }
        for k in 0 ..< 3 { XCTAssertEqual(lp.sums[k], want[k], accuracy: 1e-4 * max(1, abs(want[k])), "span \(k)") }
        let grad = lp.hiddenGradient(coef, spans: spans, backend: model.backend).toArray()
        let scale = wantGrad.map(abs).max()!
        let err = zip(grad, wantGrad).map { abs(Double($0) - $1) }.max()!
        XCTAssertLessThanOrEqual(err, 1e-4 * scale)
        // Rows outside every span (8, 9) get no gradient.
        XCTAssertEqual(grad[8 * h ..< 10 * h].map(abs).max(), 0)
    }
}
