import XCTest
import LoftModels
import LoftTensors
import LoftTestSupport

/// A DoRA Linear's forward and hand-written backward against a float64
/// reference written from peft 0.21's formula (dora.py, variants.py):
///
///     y = W·x + bias + (m/n − 1)⊙(W·x̃) + (m/n)⊙(s·B·A·x̃),  n = ‖W + s·B·A‖ (detached)
///
/// on fresh random inputs, with and without dropout (x̃ = x ⊙ mask, the mask
/// the forward drew), with a bias, accumulating into y. Gradients are
/// compared with float64 central differences of that reference, holding n
/// fixed as PEFT's detach does. Tolerances: forward 1e-5 and backward 1e-4
/// of the largest magnitude (float32 sums of ≤ 40 terms vs float64).
final class DoRALinearTests: XCTestCase {
    let cpu = CPUBackend.shared

    struct Problem {
        let n = 6, inF = 11, outF = 9, r = 3
        var x: [Double], w: [Double], bias: [Double], a: [Double], b: [Double], m: [Double], dy: [Double], y0: [Double]
        let s = 1.75
    }

    func problem(_ rng: inout SeededRandom) -> Problem {
        let (n, i, o, r) = (6, 11, 9, 3)
        return Problem(x: rng.normals(n * i), w: rng.normals(o * i), bias: rng.normals(o), a: rng.normals(r * i, scale: 0.3),
                       b: rng.normals(o * r, scale: 0.3), m: rng.normals(o).map { 1 + abs($0) }, dy: rng.normals(n * o),
                       y0: rng.normals(n * o))
    }

    /// ‖W + s·B·A‖ per row, in float64.
    func norms(_ p: Problem, a: [Double], b: [Double]) -> [Double] {
        (0 ..< p.outF).map { o in
            (0 ..< p.inF).reduce(0.0) { acc, j in
                let v = p.w[o * p.inF + j] + p.s * (0 ..< p.r).reduce(0.0) { $0 + b[o * p.r + $1] * a[$1 * p.inF + j] }
                return acc + v * v
            }.squareRoot()
        }
    }

    /// The reference forward (y0 + the layer's output); `norm` is held fixed.
    func reference(_ p: Problem, x: [Double], a: [Double], b: [Double], m: [Double], mask: [Double]?, norm: [Double]) -> [Double] {
        var y = p.y0
        for t in 0 ..< p.n {
            let xt = Array(x[t * p.inF ..< (t + 1) * p.inF])
            let dropped = mask.map { mk in (0 ..< p.inF).map { xt[$0] * mk[t * p.inF + $0] } } ?? xt
            let ax = (0 ..< p.r).map { k in (0 ..< p.inF).reduce(0.0) { $0 + a[k * p.inF + $1] * dropped[$1] } }
            for o in 0 ..< p.outF {
                let wx = (0 ..< p.inF).reduce(0.0) { $0 + p.w[o * p.inF + $1] * xt[$1] }
                let wxd = (0 ..< p.inF).reduce(0.0) { $0 + p.w[o * p.inF + $1] * dropped[$1] }
                let bax = (0 ..< p.r).reduce(0.0) { $0 + b[o * p.r + $1] * ax[$1] }
                let c = m[o] / norm[o]
                y[t * p.outF + o] += wx + p.bias[o] + (c - 1) * wxd + c * p.s * bax
            }
        }
        return y
    }

    func gradient(of f: ([Double]) -> Double, at v: [Double], h: Double = 1e-6) -> [Double] {
        (0 ..< v.count).map { i in
            var plus = v, minus = v
            plus[i] += h
            minus[i] -= h
            return (f(plus) - f(minus)) / (2 * h)
        }
    }

    func relativeError(_ got: [Float], _ want: [Double]) -> Double {
        let err = zip(got, want).map { abs(Double($0) - $1) }.max() ?? 0
        return err / max(want.map { abs($0) }.max() ?? 0, 1e-30)
    }

    func check(dropout: Float) {
        let seed = UInt64.random(in: 0 ... UInt64.max)
        var rng = SeededRandom(seed: seed)
        let p = problem(&rng)
        let f = { (v: [Double]) in v.map(Float.init) }
        let linear = Linear(weight: Tensor.cpu(f(p.w), shape: [p.outF, p.inF]), bias: Tensor.cpu(f(p.bias), shape: [p.outF]))
        let lora = LoRA(a: Tensor.cpu(f(p.a), shape: [p.r, p.inF]), b: Tensor.cpu(f(p.b), shape: [p.outF, p.r]),
                        scale: Float(p.s), dropout: dropout)
        linear.lora = lora
        lora.magnitude = Tensor.cpu(f(p.m), shape: [p.outF])

        let saved = LoRA.Saved()
        saved.dropoutSeed = rng.next()
        let y = Tensor.cpu(f(p.y0), shape: [p.n, p.outF])
        linear.forward(Tensor.cpu(f(p.x), shape: [p.n, p.inF]), into: y, backend: cpu, accumulate: true, saved: saved)
        let mask = saved.dropoutMask.map { $0.toArray().map(Double.init) }
        XCTAssertEqual(mask != nil, dropout > 0, "seed \(seed)")
        if let mask { XCTAssertTrue(mask.contains(0) && mask.contains { $0 > 1 }, "seed \(seed): the mask drops some inputs") }
        let norm = norms(p, a: p.a, b: p.b)
        let want = reference(p, x: p.x, a: p.a, b: p.b, m: p.m, mask: mask, norm: norm)
        XCTAssertLessThan(relativeError(y.toArray(), want), 1e-5, "seed \(seed) dropout \(dropout): forward")
        XCTAssertLessThan(relativeError(linear.doraWeightNorm(lora, backend: cpu), norm), 1e-6, "seed \(seed): ‖W + s·B·A‖")

        let dx = Tensor.cpu(f(p.x), shape: [p.n, p.inF])   // accumulate: dx starts at x
        linear.backward(Tensor.cpu(f(p.dy), shape: [p.n, p.outF]), saved: saved, dx: dx, accumulate: true, backend: cpu)
        func loss(x: [Double] = p.x, a: [Double] = p.a, b: [Double] = p.b, m: [Double] = p.m) -> Double {
            zip(reference(p, x: x, a: a, b: b, m: m, mask: mask, norm: norm), p.dy).reduce(0) { $0 + $1.0 * $1.1 }
        }
        let gx = zip(gradient(of: { loss(x: $0) }, at: p.x), p.x).map(+)
        XCTAssertLessThan(relativeError(dx.toArray(), gx), 1e-4, "seed \(seed) dropout \(dropout): dx")
        XCTAssertLessThan(relativeError(lora.gradA!.toArray(), gradient(of: { loss(a: $0) }, at: p.a)), 1e-4, "seed \(seed) dropout \(dropout): dA")
        XCTAssertLessThan(relativeError(lora.gradB!.toArray(), gradient(of: { loss(b: $0) }, at: p.b)), 1e-4, "seed \(seed) dropout \(dropout): dB")
        XCTAssertLessThan(relativeError(lora.gradMagnitude!.toArray(), gradient(of: { loss(m: $0) }, at: p.m)), 1e-4, "seed \(seed) dropout \(dropout): dm")
    }

    func testForwardAndBackwardWithoutDropout() { check(dropout: 0) }
    func testForwardAndBackwardWithDropout() { check(dropout: 0.3) }

    /// Inference reuses the cached norm until the parameters change; a stale
    /// cache after an update would give the old output.
    func testCachedNormFollowsParameterChanges() {
        var rng = SeededRandom(seed: UInt64.random(in: 0 ... UInt64.max))
        let p = problem(&rng)
        let f = { (v: [Double]) in v.map(Float.init) }
        let linear = Linear(weight: Tensor.cpu(f(p.w), shape: [p.outF, p.inF]))
        let lora = LoRA(a: Tensor.cpu(f(p.a), shape: [p.r, p.inF]), b: Tensor.cpu(f(p.b), shape: [p.outF, p.r]), scale: Float(p.s))
        linear.lora = lora
        linear.initializeDoRAMagnitude(backend: cpu)
        // m = ‖W + s·B·A‖ makes the scale 1: the output equals plain LoRA's.
        let x = Tensor.cpu(f(p.x), shape: [p.n, p.inF])
        let dora = cpu.zeros([p.n, p.outF], dtype: .f32)
        linear.forward(x, into: dora, backend: cpu)
        let magnitude = lora.magnitude
        lora.magnitude = nil
        let plain = cpu.zeros([p.n, p.outF], dtype: .f32)
        linear.forward(x, into: plain, backend: cpu)
        lora.magnitude = magnitude
        XCTAssertLessThan(relativeError(dora.toArray(), plain.toArray().map(Double.init)), 1e-5)

        cpu.scale(lora.b, by: 2)
        lora.parametersChanged()
        let after = cpu.zeros([p.n, p.outF], dtype: .f32)
        linear.forward(x, into: after, backend: cpu)
        let norm = norms(p, a: p.a, b: p.b.map { $0 * 2 })
        var q = p
        q.y0 = [Double](repeating: 0, count: p.n * p.outF)
        q.bias = [Double](repeating: 0, count: p.outF)
        q.b = p.b.map { $0 * 2 }
        let want = reference(q, x: p.x, a: p.a, b: q.b, m: lora.magnitude!.toArray().map(Double.init), mask: nil, norm: norm)
        XCTAssertLessThan(relativeError(after.toArray(), want), 1e-5)
    }
}
