import Foundation
import XCTest
@testable import LoftTensors
import LoftTestSupport

/// bf16/fp16 compute. The rounding helpers bit for bit against an
/// independent float64 rounding (and, for fp16, Swift's own Float16
/// conversion) on fresh random floats of every exponent, exact ties,
/// subnormals, overflow, inf and NaN. The GEMMs in bf16/fp16 against a
/// float64 product of the inputs rounded the same way: 1e-5 relative (what
/// is left is f32 accumulation); and they differ from fp32 compute, so the
/// rounding path is really taken.
final class ComputePrecisionTests: XCTestCase {
    /// x rounded to a binary format with `mantissaBits` explicit bits, smallest
    /// normal exponent `minExponent` and largest finite `maxFinite`, ties to
    /// even, computed in float64: x / quantum is exact there, so rounding it to
    /// an integer is the whole job.
    static func referenceRound(_ x: Float, mantissaBits: Int, minExponent: Int, maxFinite: Double) -> Float {
        if x.isNaN || x.isInfinite || x == 0 { return x }
        let v = Double(x)
        let exponent = max(Int(abs(v).exponent), minExponent)   // floor(log2 |v|), exactly
        let quantum = Foundation.pow(2.0, Double(exponent - mantissaBits))
        let r = (v / quantum).rounded(.toNearestOrEven) * quantum
        if abs(r) > maxFinite { return r > 0 ? .infinity : -.infinity }
        return Float(r)
    }

    static func referenceBF16(_ x: Float) -> Float {
        referenceRound(x, mantissaBits: 7, minExponent: -126, maxFinite: Double(Float(bitPattern: 0x7F7F_0000)))
    }

    static func referenceFP16(_ x: Float) -> Float { referenceRound(x, mantissaBits: 10, minExponent: -14, maxFinite: 65504) }

    /// Random bit patterns (every exponent), exact ties of both grids, fp16
    /// subnormals and their ties, values around both overflow points, specials.
    func samples(seed: UInt64) -> [Float] {
        var rng = SeededRandom(seed: seed)
        var v: [Float] = (0 ..< 20000).map { _ in Float(bitPattern: UInt32.random(in: 0 ... UInt32.max, using: &rng)) }
        for _ in 0 ..< 4000 {
            let sign: UInt32 = Bool.random(using: &rng) ? 0x8000_0000 : 0
            let high = UInt32.random(in: 0 ..< 0x7F80, using: &rng) << 16
            v.append(Float(bitPattern: sign | high | 0x8000))                                   // bf16 tie
            let e = UInt32.random(in: 0x3880_0000 ... 0x4780_0000, using: &rng) & 0xFFFF_E000
            v.append(Float(bitPattern: sign | e | 0x1000))                                      // fp16 normal tie
            let k = Float(Int.random(in: 0 ..< 1024, using: &rng))
            v.append((k + 0.5) * 0x1p-24)                                                        // fp16 subnormal tie
            v.append(Float.random(in: -0x1p-14 ... 0x1p-14, using: &rng))                      // fp16 subnormal
            v.append(Float.random(in: 65000 ... 66000, using: &rng) * (sign == 0 ? 1 : -1))    // fp16 overflow edge
            v.append(Float(bitPattern: sign | UInt32.random(in: 0x7F7F_0000 ... 0x7F7F_FFFF, using: &rng)))  // bf16 overflow edge
        }
        v += [0, -0, .infinity, -.infinity, .nan, 65504, 65519.998, 65520, -65520, 0x1p-24, 0x1p-25, 0x1.8p-25,
              .leastNonzeroMagnitude, .greatestFiniteMagnitude, 0x1p-14, 0x1.ffcp-15]
        return v
    }

    func assertBitExact(_ got: [Float], _ want: [Float], _ what: String, seed: UInt64) {
        var bad = 0
        for i in got.indices {
            let same = got[i].isNaN ? want[i].isNaN : got[i].bitPattern == want[i].bitPattern
            if !same {
                if bad < 5 { XCTFail("\(what): \(want[i]) (\(String(want[i].bitPattern, radix: 16))) rounded to \(got[i]), reference \(want[i]); seed \(seed)") }
                bad += 1
            }
        }
        XCTAssertEqual(bad, 0, "\(what): \(bad) of \(got.count) differ; seed \(seed)")
    }

    func testRoundingIsBitExact() {
        let seed = freshSeed()
        let input = samples(seed: seed)
        var bf16 = input, fp16 = input
        bf16.withUnsafeMutableBufferPointer { ReducedPrecision.roundToBF16($0) }
        fp16.withUnsafeMutableBufferPointer { ReducedPrecision.roundToFP16($0) }
        // The reference of a NaN input is NaN; the sample check compares the others' bits.
        assertBitExact(bf16, input.map(Self.referenceBF16), "bf16", seed: seed)
        assertBitExact(fp16, input.map(Self.referenceFP16), "fp16", seed: seed)
        assertBitExact(fp16, input.map { Float(Float16($0)) }, "fp16 vs Swift Float16", seed: seed)
        // The existing bf16 storage conversion (BFloat16) agrees with the helper.
        assertBitExact(bf16, input.map { BFloat16.toFloat(BFloat16.fromFloat($0)) }, "bf16 vs BFloat16", seed: seed)
        // A second rounding changes nothing.
        var again = fp16
        again.withUnsafeMutableBufferPointer { ReducedPrecision.roundToFP16($0) }
        assertBitExact(again, fp16, "fp16 idempotent", seed: seed)
    }

    /// A compact frozen weight for the tiled path: plain rows.
    final class Rows: FrozenMatrix, @unchecked Sendable {
        let values: [Float], rows: Int, cols: Int
        init(_ values: [Float], rows: Int, cols: Int) { self.values = values; self.rows = rows; self.cols = cols }
        func dequantizeRows(_ range: Range<Int>, into dst: UnsafeMutablePointer<Float>) {
            for i in 0 ..< range.count * cols { dst[i] = values[range.lowerBound * cols + i] }
        }
    }

    func product(_ a: [Float], _ b: [Float], n: Int, k: Int, m: Int, transA: Bool, transB: Bool) -> [Double] {
        var y = [Double](repeating: 0, count: n * m)
        for i in 0 ..< n { for j in 0 ..< m {
            var s = 0.0
            for t in 0 ..< k { s += Double(transA ? a[t * n + i] : a[i * k + t]) * Double(transB ? b[j * k + t] : b[t * m + j]) }
            y[i * m + j] = s
        } }
        return y
    }

    /// Forward, input and weight gradients of one linear layer, dense and tiled.
    /// Shapes cross the rounded GEMM's blocks (512 rows, 512 deep, 256 columns);
    /// n = 2 would be a GEMV at fp32.
    func testLinearForwardAndBackwardInReducedPrecision() {
        let seed = freshSeed()
        var rng = SeededRandom(seed: seed)
        for (n, k, m) in [(9, 70, 300), (2, 33, 17), (600, 530, 20)] {
            let x = floats(rng.normals(n * k)), w = floats(rng.normals(m * k, scale: 0.1)), dy = floats(rng.normals(n * m, scale: 1e-3))
            let fp32 = CPUBackend()
            for precision in [ComputePrecision.bf16, .fp16] {
                let b = CPUBackend(computePrecision: precision)
                func rounded(_ v: [Float]) -> [Float] {
                    var r = v
                    r.withUnsafeMutableBufferPointer { precision.round($0) }
                    return r
                }
                let (rx, rw, rdy) = (rounded(x), rounded(w), rounded(dy))
                let what = "\(precision) n=\(n), seed \(seed)"
                func run(_ be: CPUBackend) -> (y: [Float], yTiled: [Float], dx: [Float], dxTiled: [Float], dw: [Float]) {
                    let y = be.zeros([n, m], dtype: .f32), yt = be.zeros([n, m], dtype: .f32)
                    let dx = be.zeros([n, k], dtype: .f32), dxt = be.zeros([n, k], dtype: .f32), dw = be.zeros([m, k], dtype: .f32)
                    let (xt, wt, dyt) = (Tensor.cpu(x, shape: [n, k]), Tensor.cpu(w, shape: [m, k]), Tensor.cpu(dy, shape: [n, m]))
                    let frozen = Rows(w, rows: m, cols: k)
                    be.linear(xt, wt, bias: nil, into: y, accumulate: false)
                    be.linear(xt, frozen: frozen, bias: nil, into: yt, accumulate: false)
                    be.linearBackwardInput(dyt, wt, into: dx, accumulate: false)
                    be.linearBackwardInput(dyt, frozen: frozen, into: dxt, accumulate: false)
                    be.linearBackwardWeight(dyt, xt, into: dw, accumulate: false)
                    return (y.toArray(), yt.toArray(), dx.toArray(), dxt.toArray(), dw.toArray())
                }
                let saved = CPUBackend.frozenTileRows
                CPUBackend.frozenTileRows = 64   // several tiles
                let got = run(b), full = run(fp32)
                CPUBackend.frozenTileRows = saved
                let yRef = product(rx, rw, n: n, k: k, m: m, transA: false, transB: true)
                let dxRef = product(rdy, rw, n: n, k: m, m: k, transA: false, transB: false)
                let dwRef = product(rdy, rx, n: m, k: n, m: k, transA: true, transB: false)
                XCTAssertLessThan(relativeError(got.y, yRef), 1e-5, "forward \(what)")
                XCTAssertLessThan(relativeError(got.yTiled, yRef), 1e-5, "tiled forward \(what)")
                XCTAssertLessThan(relativeError(got.dx, dxRef), 1e-5, "input gradient \(what)")
                XCTAssertLessThan(relativeError(got.dxTiled, dxRef), 1e-5, "tiled input gradient \(what)")
                XCTAssertLessThan(relativeError(got.dw, dwRef), 1e-5, "weight gradient \(what)")
                // fp32 compute is as far from these references as the rounding of the inputs (~2⁻⁹ / 2⁻¹²).
                for (name, a, r) in [("forward", full.y, yRef), ("input gradient", full.dx, dxRef), ("weight gradient", full.dw, dwRef)] {
                    XCTAssertGreaterThan(relativeError(a, r), 2e-5, "fp32 \(name) should differ from \(what)")
                }
            }
        }
    }

    /// Attention computes its scores and weighted sums through the same GEMM:
    /// in bf16 it moves away from fp32 by about bf16's resolution, no more.
    func testAttentionUsesComputePrecision() {
        let seed = freshSeed()
        var rng = SeededRandom(seed: seed)
        let (n, heads, kv, d) = (40, 4, 2, 16)
        let q = Tensor.cpu(floats(rng.normals(n * heads * d)), shape: [n, heads * d])
        let k = Tensor.cpu(floats(rng.normals(n * kv * d)), shape: [n, kv * d])
        let v = Tensor.cpu(floats(rng.normals(n * kv * d)), shape: [n, kv * d])
        let spec = AttentionSpec(heads: heads, kvHeads: kv, headDim: d, segments: [0, 17])
        func out(_ b: CPUBackend) -> [Float] {
            let o = b.zeros([n, heads * d], dtype: .f32)
            b.attention(q: q, k: k, v: v, out: o, lse: nil, spec: spec)
            return o.toArray()
        }
        let full = out(CPUBackend()).map(Double.init), bf16 = out(CPUBackend(computePrecision: .bf16))
        let err = relativeError(bf16, full)
        XCTAssertGreaterThan(err, 1e-4, "bf16 attention equals fp32: the precision is not applied; seed \(seed)")
        XCTAssertLessThan(err, 3e-2, "bf16 attention too far from fp32; seed \(seed)")
    }
}
