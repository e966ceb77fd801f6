import XCTest
@testable import LoftTensors
import LoftTestSupport

/// Each CPU operation against an independent float64 reference on fresh
/// random inputs; each backward against float64 finite differences of the
/// reference forward, through a random projection L = Σ out ⊙ R.
/// Tolerances: forward 1e-5 of the largest magnitude (f32 rounding over sums
/// of at most a few hundred terms); backward 1e-4 (f32 gradients vs
/// float64 central differences with h = 1e-6).
final class CPUBackendTests: XCTestCase {
    let cpu = CPUBackend.shared
    let forwardTolerance = 1e-5
    let backwardTolerance = 1e-4

    func tensor(_ x: [Double], _ shape: [Int]) -> Tensor { Tensor.cpu(floats(x), shape: shape) }

    func testLinearForwardAndBackward() {
        let seed = freshSeed()
        var rng = SeededRandom(seed: seed)
        let (n, k, m) = (7, 33, 19)
        let x = rng.normals(n * k), w = rng.normals(m * k), b = rng.normals(m), r = rng.normals(n * m)
        let y = cpu.zeros([n, m], dtype: .f32)
        cpu.linear(tensor(x, [n, k]), tensor(w, [m, k]), bias: tensor(b, [m]), into: y, accumulate: false)
        XCTAssertLessThan(relativeError(y.toArray(), Ref.linear(x, w, bias: b, n: n, k: k, m: m)), forwardTolerance, "seed \(seed)")

        // accumulate adds onto what y holds
        cpu.linear(tensor(x, [n, k]), tensor(w, [m, k]), bias: nil, into: y, accumulate: true)
        let twice = zip(Ref.linear(x, w, bias: b, n: n, k: k, m: m), Ref.linear(x, w, bias: nil, n: n, k: k, m: m)).map(+)
        XCTAssertLessThan(relativeError(y.toArray(), twice), forwardTolerance, "seed \(seed)")

        let dx = cpu.zeros([n, k], dtype: .f32), dw = cpu.zeros([m, k], dtype: .f32)
        cpu.linearBackwardInput(tensor(r, [n, m]), tensor(w, [m, k]), into: dx, accumulate: false)
        cpu.linearBackwardWeight(tensor(r, [n, m]), tensor(x, [n, k]), into: dw, accumulate: false)
        let gx = Ref.gradient(of: { Ref.dot(Ref.linear($0, w, bias: b, n: n, k: k, m: m), r) }, at: x)
        let gw = Ref.gradient(of: { Ref.dot(Ref.linear(x, $0, bias: b, n: n, k: k, m: m), r) }, at: w)
        XCTAssertLessThan(relativeError(dx.toArray(), gx), backwardTolerance, "seed \(seed)")
        XCTAssertLessThan(relativeError(dw.toArray(), gw), backwardTolerance, "seed \(seed)")
    }

    func testRMSNormForwardAndBackward() {
        for offset in [0.0, 1.0] {
            let seed = freshSeed()
            var rng = SeededRandom(seed: seed)
            let (n, d) = (5, 24)
            let x = rng.normals(n * d), w = rng.normals(d), r = rng.normals(n * d)
            let y = cpu.zeros([n, d], dtype: .f32), rstd = cpu.zeros([n], dtype: .f32)
            cpu.rmsNorm(tensor(x, [n, d]), weight: tensor(w, [d]), eps: 1e-5, weightOffset: Float(offset), into: y, rstd: rstd)
            XCTAssertLessThan(relativeError(y.toArray(), Ref.rmsNorm(x, w, eps: 1e-5, offset: offset)), forwardTolerance, "seed \(seed)")

            let dx = cpu.zeros([n, d], dtype: .f32), dw = cpu.zeros([d], dtype: .f32)
            cpu.rmsNormBackward(tensor(r, [n, d]), x: tensor(x, [n, d]), weight: tensor(w, [d]), weightOffset: Float(offset),
                                rstd: rstd, dx: dx, accumulate: false, dweight: dw)
            let gx = Ref.gradient(of: { Ref.dot(Ref.rmsNorm($0, w, eps: 1e-5, offset: offset), r) }, at: x)
            let gw = Ref.gradient(of: { Ref.dot(Ref.rmsNorm(x, $0, eps: 1e-5, offset: offset), r) }, at: w)
            XCTAssertLessThan(relativeError(dx.toArray(), gx), backwardTolerance, "seed \(seed)")
            XCTAssertLessThan(relativeError(dw.toArray(), gw), backwardTolerance, "seed \(seed)")
        }
    }

    /// Whole heads, and partial rotary (the first 6 of 8 dimensions turn).
    func testRoPEForwardAndInverseIsTheBackward() {
        for rotary in [8, 6] { ropeCase(rotary: rotary) }
    }

    func ropeCase(rotary: Int) {
        let seed = freshSeed()
        var rng = SeededRandom(seed: seed)
        let (n, heads, d) = (6, 3, 8)
        let x = rng.normals(n * heads * d), r = rng.normals(n * heads * d)
        let positions = (0 ..< n).map { _ in Int.random(in: 0 ..< 4000, using: &rng) }
        let invFreq = (0 ..< rotary / 2).map { Foundation.pow(10000.0, -2.0 * Double($0) / Double(rotary)) }
        let t = tensor(x, [n, heads * d])
        cpu.rope(t, heads: heads, headDim: d, positions: positions.map(Int32.init), invFreq: floats(invFreq), attentionScale: 1, inverse: false)
        let expected = Ref.rope(x, heads: heads, headDim: d, positions: positions, invFreq: invFreq, scale: 1)
        // Angles up to 4000 rad: f32 angle rounding dominates, hence 1e-4 here.
        XCTAssertLessThan(relativeError(t.toArray(), expected), 1e-4, "seed \(seed) rotary \(rotary)")
        if rotary < d {  // the dimensions past the rotary ones are untouched
            XCTAssertEqual(t.toArray()[rotary ..< d].map(Double.init), Array(x[rotary ..< d]).map { Double(Float($0)) })
        }

        let g = tensor(r, [n, heads * d])
        cpu.rope(g, heads: heads, headDim: d, positions: positions.map(Int32.init), invFreq: floats(invFreq), attentionScale: 1, inverse: true)
        let fd = Ref.gradient(of: { Ref.dot(Ref.rope($0, heads: heads, headDim: d, positions: positions, invFreq: invFreq, scale: 1), r) }, at: x)
        XCTAssertLessThan(relativeError(g.toArray(), fd), 1e-4, "seed \(seed) rotary \(rotary)")
    }

    func attentionCase(nq: Int, nk: Int, heads: Int, kvHeads: Int, d: Int, offset: Int, segments: [Int], window: Int?,
                       backward: Bool, file: StaticString = #filePath, line: UInt = #line) {
        let seed = freshSeed()
        var rng = SeededRandom(seed: seed)
        let q = rng.normals(nq * heads * d), k = rng.normals(nk * kvHeads * d), v = rng.normals(nk * kvHeads * d)
        let spec = AttentionSpec(heads: heads, kvHeads: kvHeads, headDim: d, queryOffset: offset, segments: segments, window: window)
        let (qt, kt, vt) = (tensor(q, [nq, heads * d]), tensor(k, [nk, kvHeads * d]), tensor(v, [nk, kvHeads * d]))
        let out = cpu.zeros([nq, heads * d], dtype: .f32), lse = cpu.zeros([heads, nq], dtype: .f32)
        cpu.attention(q: qt, k: kt, v: vt, out: out, lse: lse, spec: spec)
        func ref(_ q: [Double], _ k: [Double], _ v: [Double]) -> [Double] {
            Ref.attention(q: q, k: k, v: v, heads: heads, kvHeads: kvHeads, d: d, queryOffset: offset, segments: segments, window: window)
        }
        XCTAssertLessThan(relativeError(out.toArray(), ref(q, k, v)), forwardTolerance, "seed \(seed)", file: file, line: line)
        guard backward else { return }
        let r = rng.normals(nq * heads * d)
        let dq = cpu.zeros([nq, heads * d], dtype: .f32), dk = cpu.zeros([nk, kvHeads * d], dtype: .f32), dv = cpu.zeros([nk, kvHeads * d], dtype: .f32)
        cpu.attentionBackward(dOut: tensor(r, [nq, heads * d]), q: qt, k: kt, v: vt, out: out, lse: lse, dq: dq, dk: dk, dv: dv, spec: spec)
        XCTAssertLessThan(relativeError(dq.toArray(), Ref.gradient(of: { Ref.dot(ref($0, k, v), r) }, at: q)), backwardTolerance, "dq seed \(seed)", file: file, line: line)
        XCTAssertLessThan(relativeError(dk.toArray(), Ref.gradient(of: { Ref.dot(ref(q, $0, v), r) }, at: k)), backwardTolerance, "dk seed \(seed)", file: file, line: line)
        XCTAssertLessThan(relativeError(dv.toArray(), Ref.gradient(of: { Ref.dot(ref(q, k, $0), r) }, at: v)), backwardTolerance, "dv seed \(seed)", file: file, line: line)
    }

    func testAttentionCausalGQA() {
        attentionCase(nq: 9, nk: 9, heads: 4, kvHeads: 2, d: 8, offset: 0, segments: [0], window: nil, backward: true)
    }

    func testAttentionPackedSegmentsDoNotSeeEachOther() {
        attentionCase(nq: 12, nk: 12, heads: 2, kvHeads: 1, d: 4, offset: 0, segments: [0, 5, 8], window: nil, backward: true)
    }

    func testAttentionSlidingWindow() {
        attentionCase(nq: 11, nk: 11, heads: 2, kvHeads: 2, d: 4, offset: 0, segments: [0], window: 3, backward: true)
    }

    func testAttentionWithKVCacheOffset() {
        // Decoding: 2 new queries after 7 cached keys.
        attentionCase(nq: 2, nk: 9, heads: 3, kvHeads: 1, d: 8, offset: 7, segments: [0], window: nil, backward: false)
    }

    func testAttentionLongerThanOneBlock() {
        // More queries than the 64-row block: exercises block boundaries and the key range per block.
        attentionCase(nq: 150, nk: 150, heads: 2, kvHeads: 1, d: 8, offset: 0, segments: [0, 70], window: 90, backward: false)
    }

    func testAttentionBackwardOverSeveralStackedBlocks() {
        // Three query heads per KV head stacked into one block, 130 queries in
        // two segments (blocks of 64, 6 and 60 rows per head), both KV heads.
        attentionCase(nq: 130, nk: 130, heads: 6, kvHeads: 2, d: 4, offset: 0, segments: [0, 70], window: nil, backward: true)
    }

    func testSwiGLUForwardAndBackward() {
        let seed = freshSeed()
        var rng = SeededRandom(seed: seed)
        let n = 40
        let g = rng.normals(n, scale: 2), u = rng.normals(n), r = rng.normals(n)
        let out = cpu.zeros([n], dtype: .f32)
        cpu.swiglu(gate: tensor(g, [n]), up: tensor(u, [n]), into: out)
        XCTAssertLessThan(relativeError(out.toArray(), Ref.swiglu(g, u)), forwardTolerance, "seed \(seed)")
        let dg = cpu.zeros([n], dtype: .f32), du = cpu.zeros([n], dtype: .f32)
        cpu.swigluBackward(tensor(r, [n]), gate: tensor(g, [n]), up: tensor(u, [n]), dGate: dg, dUp: du)
        XCTAssertLessThan(relativeError(dg.toArray(), Ref.gradient(of: { Ref.dot(Ref.swiglu($0, u), r) }, at: g)), backwardTolerance, "seed \(seed)")
        XCTAssertLessThan(relativeError(du.toArray(), Ref.gradient(of: { Ref.dot(Ref.swiglu(g, $0), r) }, at: u)), backwardTolerance, "seed \(seed)")
    }

    func testSoftcapForwardAndBackward() {
        let seed = freshSeed()
        var rng = SeededRandom(seed: seed)
        let n = 41, cap: Float = 2.5
        let x = rng.normals(n, scale: 4), r = rng.normals(n)
        let capped = tensor(x, [n])
        cpu.softcap(capped, cap: cap)
        let ref = { (v: [Double]) in v.map { Double(cap) * Foundation.tanh($0 / Double(cap)) } }
        XCTAssertLessThan(relativeError(capped.toArray(), ref(x)), forwardTolerance, "seed \(seed)")
        let dy = tensor(r, [n])
        cpu.softcapBackward(dy, capped: capped, cap: cap)
        XCTAssertLessThan(relativeError(dy.toArray(), Ref.gradient(of: { Ref.dot(ref($0), r) }, at: x)), backwardTolerance, "seed \(seed)")
    }

    func testGeGLUForwardAndBackward() {
        let seed = freshSeed()
        var rng = SeededRandom(seed: seed)
        // 53 values: three full 16-lane vectors and a partial tail; scale 4 reaches
        // the tails where tanh saturates (gelu(-8) ≈ 0) as well as the middle.
        let n = 53
        let g = rng.normals(n, scale: 4), u = rng.normals(n), r = rng.normals(n)
        let out = cpu.zeros([n], dtype: .f32)
        cpu.geglu(gate: tensor(g, [n]), up: tensor(u, [n]), into: out)
        XCTAssertLessThan(relativeError(out.toArray(), Ref.geglu(g, u)), forwardTolerance, "seed \(seed)")
        let dg = cpu.zeros([n], dtype: .f32), du = cpu.zeros([n], dtype: .f32)
        cpu.gegluBackward(tensor(r, [n]), gate: tensor(g, [n]), up: tensor(u, [n]), dGate: dg, dUp: du)
        XCTAssertLessThan(relativeError(dg.toArray(), Ref.gradient(of: { Ref.dot(Ref.geglu($0, u), r) }, at: g)), backwardTolerance, "seed \(seed)")
        XCTAssertLessThan(relativeError(du.toArray(), Ref.gradient(of: { Ref.dot(Ref.geglu(g, $0), r) }, at: u)), backwardTolerance, "seed \(seed)")
    }

    func testCrossEntropyWithIgnoredRows() {
        let seed = freshSeed()
        var rng = SeededRandom(seed: seed)
        let (n, v) = (6, 50)
        let logits = rng.normals(n * v, scale: 3)
        var labels = (0 ..< n).map { _ in Int.random(in: 0 ..< v, using: &rng) }
        labels[2] = -100
        let dl = cpu.zeros([n, v], dtype: .f32)
        let loss = cpu.crossEntropy(logits: tensor(logits, [n, v]), labels: labels.map(Int32.init), dLogits: dl, gradScale: 1)
        let expected = Ref.crossEntropy(logits, labels: labels, vocab: v)
        XCTAssertEqual(loss, expected, accuracy: 1e-5 * abs(expected), "seed \(seed)")
        let fd = Ref.gradient(of: { Ref.crossEntropy($0, labels: labels, vocab: v) }, at: logits)
        XCTAssertLessThan(relativeError(dl.toArray(), fd), backwardTolerance, "seed \(seed)")
        XCTAssertTrue(dl.toArray()[2 * v ..< 3 * v].allSatisfy { $0 == 0 }, "ignored rows get no gradient")
        // In place, as training's loss chunks call it: the gradient overwrites the logits.
        let inPlace = tensor(logits, [n, v])
        let lossInPlace = cpu.crossEntropy(logits: inPlace, labels: labels.map(Int32.init), dLogits: inPlace, gradScale: 1)
        XCTAssertEqual(lossInPlace, loss, "in place, the same loss (seed \(seed))")
        XCTAssertEqual(inPlace.toArray(), dl.toArray(), "in place, the same gradient (seed \(seed))")
    }

    func testEmbeddingForwardAndBackward() {
        let seed = freshSeed()
        var rng = SeededRandom(seed: seed)
        let (vocab, d) = (10, 4)
        let table = rng.normals(vocab * d)
        let ids: [Int32] = [3, 7, 3, 0]
        let out = cpu.zeros([4, d], dtype: .f32)
        cpu.embedding(ids: ids, table: tensor(table, [vocab, d]), into: out)
        let expected = ids.flatMap { table[Int($0) * d ..< (Int($0) + 1) * d] }
        XCTAssertEqual(out.toArray(), floats(expected))
        let r = rng.normals(4 * d)
        let dt = cpu.zeros([vocab, d], dtype: .f32)
        cpu.embeddingBackward(ids: ids, dOut: tensor(r, [4, d]), dTable: dt)
        let fd = Ref.gradient(of: { t in Ref.dot(ids.flatMap { t[Int($0) * d ..< (Int($0) + 1) * d] }, r) }, at: table)
        XCTAssertLessThan(relativeError(dt.toArray(), fd), backwardTolerance, "seed \(seed)")
    }

    func testAdamWMatchesTheAlgorithmInFloat64() {
        let seed = freshSeed()
        var rng = SeededRandom(seed: seed)
        let n = 33
        var p = rng.normals(n), m = [Double](repeating: 0, count: n), v = m
        let pt = tensor(p, [n]), mt = cpu.zeros([n], dtype: .f32), vt = cpu.zeros([n], dtype: .f32)
        let (lr, b1, b2, eps, wd) = (1e-2, 0.9, 0.999, 1e-8, 0.1)
        for step in 1 ... 5 {
            let g = rng.normals(n)
            cpu.adamW(param: pt, grad: tensor(g, [n]), m: mt, v: vt,
                      hyper: AdamWHyper(lr: Float(lr), beta1: Float(b1), beta2: Float(b2), eps: Float(eps), weightDecay: Float(wd), step: step))
            for i in 0 ..< n {
                p[i] *= 1 - lr * wd
                m[i] = b1 * m[i] + (1 - b1) * g[i]
                v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i]
                let mhat = m[i] / (1 - Foundation.pow(b1, Double(step))), vhat = v[i] / (1 - Foundation.pow(b2, Double(step)))
                p[i] -= lr * mhat / (vhat.squareRoot() + eps)
            }
        }
        XCTAssertLessThan(relativeError(pt.toArray(), p), 1e-5, "seed \(seed)")
    }

    func testSumOfSquaresAndAxpy() {
        let seed = freshSeed()
        var rng = SeededRandom(seed: seed)
        let x = rng.normals(100), y = rng.normals(100)
        XCTAssertEqual(cpu.sumOfSquares(tensor(x, [100])), x.reduce(0) { $0 + Double(Float($1)) * Double(Float($1)) }, accuracy: 1e-9)
        let yt = tensor(y, [100])
        cpu.axpy(0.5, tensor(x, [100]), yt)
        XCTAssertLessThan(relativeError(yt.toArray(), zip(x, y).map { 0.5 * $0 + $1 }), forwardTolerance, "seed \(seed)")
    }
}
