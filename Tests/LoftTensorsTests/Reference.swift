import Foundation
@testable import LoftTensors
import LoftTestSupport

func freshSeed() -> UInt64 { UInt64.random(in: 0 ... UInt64.max) }

/// The largest |a − b| relative to the largest |b| (a scale-aware error that
/// does not blow up on entries near zero).
func relativeError(_ a: [Float], _ b: [Double]) -> Double {
    precondition(a.count == b.count, "\(a.count) vs \(b.count)")
    var num = 0.0, den = 0.0
    for i in 0 ..< a.count { num = max(num, abs(Double(a[i]) - b[i])); den = max(den, abs(b[i])) }
    return num / max(den, 1e-30)
}

func floats(_ x: [Double]) -> [Float] { x.map(Float.init) }

/// Float64 reference implementations, written from the definitions and
/// sharing no code with the backend.
enum Ref {
    /// y[n, m] = Σ_k x[n, k] w[m, k] + bias[m]
    static func linear(_ x: [Double], _ w: [Double], bias: [Double]?, n: Int, k: Int, m: Int) -> [Double] {
        var y = [Double](repeating: 0, count: n * m)
        for i in 0 ..< n { for j in 0 ..< m {
            var s = bias?[j] ?? 0
            for t in 0 ..< k { s += x[i * k + t] * w[j * k + t] }
            y[i * m + j] = s
        } }
        return y
    }

    static func rmsNorm(_ x: [Double], _ w: [Double], eps: Double, offset: Double) -> [Double] {
        let d = w.count
        var y = x
        for r in 0 ..< x.count / d {
            var ss = 0.0
            for j in 0 ..< d { ss += x[r * d + j] * x[r * d + j] }
            let inv = 1 / (ss / Double(d) + eps).squareRoot()
            for j in 0 ..< d { y[r * d + j] = x[r * d + j] * inv * (w[j] + offset) }
        }
        return y
    }

    static func rope(_ x: [Double], heads: Int, headDim: Int, positions: [Int], invFreq: [Double], scale: Double) -> [Double] {
        var y = x
        let half = invFreq.count  // headDim/2, or fewer with partial rotary (the rest pass through)
        for (r, p) in positions.enumerated() { for h in 0 ..< heads { for i in 0 ..< half {
            let base = r * heads * headDim + h * headDim
            let th = Double(p) * invFreq[i]
            let (a, b) = (x[base + i], x[base + i + half])
            y[base + i] = (a * Foundation.cos(th) - b * Foundation.sin(th)) * scale
            y[base + i + half] = (b * Foundation.cos(th) + a * Foundation.sin(th)) * scale
        } } }
        return y
    }

    /// Naive attention: full score rows with an explicit mask.
    static func attention(q: [Double], k: [Double], v: [Double], heads: Int, kvHeads: Int, d: Int,
                          queryOffset: Int, segments: [Int], window: Int?) -> [Double] {
        let nq = q.count / (heads * d), nk = k.count / (kvHeads * d)
        let scale = 1 / Double(d).squareRoot()
        var out = [Double](repeating: 0, count: q.count)
        func segment(_ pos: Int) -> Int { segments.lastIndex(where: { $0 <= pos })! }
        for i in 0 ..< nq {
            let pos = queryOffset + i
            for h in 0 ..< heads {
                let g = h / (heads / kvHeads)
                var scores = [Double](repeating: -.infinity, count: nk)
                for j in 0 ... pos where segment(j) == segment(pos) && (window == nil || pos - j < window!) {
                    var s = 0.0
                    for t in 0 ..< d { s += q[i * heads * d + h * d + t] * k[j * kvHeads * d + g * d + t] }
                    scores[j] = s * scale
                }
                let mx = scores.max()!
                let e = scores.map { $0 == -.infinity ? 0 : Foundation.exp($0 - mx) }
                let z = e.reduce(0, +)
                for t in 0 ..< d {
                    var s = 0.0
                    for j in 0 ..< nk { s += e[j] / z * v[j * kvHeads * d + g * d + t] }
                    out[i * heads * d + h * d + t] = s
                }
            }
        }
        return out
    }

    static func swiglu(_ g: [Double], _ u: [Double]) -> [Double] {
        zip(g, u).map { x, y in x / (1 + Foundation.exp(-x)) * y }
    }

    /// gelu with PyTorch's tanh approximation, written as the textbook formula
    /// (the kernel uses the sigmoid form, so this is an independent check).
    static func geglu(_ g: [Double], _ u: [Double]) -> [Double] {
        zip(g, u).map { x, y in 0.5 * x * (1 + Foundation.tanh((2 / Double.pi).squareRoot() * (x + 0.044715 * x * x * x))) * y }
    }

    /// Mean cross-entropy over labelled rows.
    static func crossEntropy(_ logits: [Double], labels: [Int], vocab: Int) -> Double {
        var total = 0.0
        for (r, l) in labels.enumerated() where l >= 0 {
            let row = logits[r * vocab ..< (r + 1) * vocab]
            let mx = row.max()!
            let lse = mx + Foundation.log(row.map { Foundation.exp($0 - mx) }.reduce(0, +))
            total += lse - row[r * vocab + l]
        }
        return total
    }

    /// Central finite differences of a scalar function, in float64.
    static func gradient(of f: ([Double]) -> Double, at x: [Double], h: Double = 1e-6) -> [Double] {
        var g = [Double](repeating: 0, count: x.count)
        var xp = x
        for i in 0 ..< x.count {
            xp[i] = x[i] + h; let a = f(xp)
            xp[i] = x[i] - h; let b = f(xp)
            xp[i] = x[i]
            g[i] = (a - b) / (2 * h)
        }
        return g
    }

    static func dot(_ a: [Double], _ b: [Double]) -> Double { zip(a, b).reduce(0) { $0 + $1.0 * $1.1 } }
}
