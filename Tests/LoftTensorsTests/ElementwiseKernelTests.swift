import CLoftKernels
import Foundation
import XCTest
@testable import LoftTensors
import LoftTestSupport

/// The vectorized exp-based kernels (CLoftKernels) against float64
/// references computed here from the definitions, on fresh random inputs, for
/// every instruction-set copy this CPU runs (AVX-512, AVX2+FMA, baseline),
/// with lengths around the 16-lane width so the padded tail is exercised.
/// Tolerances: exp within 3e-7 relative (2 ulp of the polynomial plus the
/// argument's rounding); sums and softmax within 1e-6 relative; SwiGLU and
/// its gradients within 1e-6 of each value's scale.
final class ElementwiseKernelTests: XCTestCase {
    let lengths = [1, 7, 15, 16, 17, 31, 33, 100, 1000, 4099]

    /// Runs `body` once per kernel copy this CPU can run, then restores the best.
    func forEachLevel(_ body: (Int32) throws -> Void) rethrows {
        let best = loft_kernels_level()
        defer { loft_kernels_set_level(best) }
        for level in (0 ... best).reversed() {
            loft_kernels_set_level(level)
            XCTAssertEqual(loft_kernels_level(), level)
            try body(level)
        }
    }

    func testExpMatchesFloat64() {
        let seed = freshSeed()
        var rng = SeededRandom(seed: seed)
        forEachLevel { level in
            for n in lengths {
                let x = (0 ..< n).map { _ in Float(rng.normal() * 30) }
                var y = [Float](repeating: .nan, count: n)
                loft_exp(x, &y, n)
                for i in 0 ..< n where x[i] > -87 && x[i] < 88 {
                    let want = Foundation.exp(Double(x[i]))
                    XCTAssertLessThan(abs(Double(y[i]) - want) / want, 3e-7, "exp(\(x[i])) level \(level) seed \(seed)")
                }
            }
            // Edges: far below the range gives 0, above it +inf, NaN stays NaN, 0 gives 1 exactly.
            let edges: [Float] = [-.infinity, -200, -87.5, 0, 89, 200, .infinity, .nan]
            var y = [Float](repeating: 7, count: edges.count)
            loft_exp(edges, &y, edges.count)
            XCTAssertEqual(Array(y[0 ..< 3]), [0, 0, 0], "level \(level)")
            XCTAssertEqual(y[3], 1, "level \(level)")
            XCTAssertEqual(Array(y[4 ..< 7]), [.infinity, .infinity, .infinity], "level \(level)")
            XCTAssertTrue(y[7].isNaN, "level \(level)")
        }
    }

    func testMaxAndShiftedSums() {
        let seed = freshSeed()
        var rng = SeededRandom(seed: seed)
        forEachLevel { level in
            for n in lengths {
                let x = (0 ..< n).map { _ in Float(rng.normal() * 4) }
                let mx = x.max()!
                XCTAssertEqual(loft_max(x, n), mx, "level \(level) n \(n) seed \(seed)")
                let want = x.map { Foundation.exp(Double($0) - Double(mx)) }
                let wantSum = want.reduce(0, +)
                var out = [Float](repeating: .nan, count: n)
                let sum = loft_exp_shifted(x, &out, n, mx)
                XCTAssertLessThan(abs(Double(sum) - wantSum) / wantSum, 1e-6, "level \(level) n \(n) seed \(seed)")
                XCTAssertLessThan(relativeError(out, want), 1e-6, "level \(level) n \(n) seed \(seed)")
                var out64 = [Float](repeating: .nan, count: n)
                let sum64 = loft_exp_sum_f64(x, &out64, n, mx)
                XCTAssertLessThan(abs(sum64 - wantSum) / wantSum, 1e-6, "level \(level) n \(n) seed \(seed)")
                XCTAssertEqual(out64, out, "the f64 sum writes the same terms")
                XCTAssertEqual(loft_exp_sum_f64(x, nil, n, mx), sum64, "without an output, the same sum")
            }
            var withNaN: [Float] = [1, 2, .nan, 3]
            XCTAssertTrue(loft_max(&withNaN, 4).isNaN, "a NaN anywhere makes the max NaN (level \(level))")
        }
    }

    func testSoftmaxRow() {
        let seed = freshSeed()
        var rng = SeededRandom(seed: seed)
        forEachLevel { level in
            for n in lengths {
                var row = (0 ..< n).map { _ in Float(rng.normal() * 3) }
                let x = row.map(Double.init)
                let mx = x.max()!
                let lse = mx + Foundation.log(x.map { Foundation.exp($0 - mx) }.reduce(0, +))
                let want = x.map { Foundation.exp($0 - lse) }
                let got = loft_softmax_row(&row, n)
                XCTAssertEqual(Double(got), lse, accuracy: 1e-6 * max(1, abs(lse)), "level \(level) n \(n) seed \(seed)")
                XCTAssertLessThan(relativeError(row, want), 1e-6, "level \(level) n \(n) seed \(seed)")
            }
        }
    }

    func testSwiGLUAndItsGradients() {
        let seed = freshSeed()
        var rng = SeededRandom(seed: seed)
        forEachLevel { level in
            for n in lengths {
                let g = (0 ..< n).map { _ in rng.normal() * 5 }, u = rng.normals(n), dy = rng.normals(n)
                var out = [Float](repeating: .nan, count: n), dg = out, du = out
                loft_swiglu(floats(g), floats(u), &out, n)
                loft_swiglu_backward(floats(dy), floats(g), floats(u), &dg, &du, n)
                // From the definitions, in float64 on the same float inputs.
                let gf = floats(g).map(Double.init), uf = floats(u).map(Double.init), df = floats(dy).map(Double.init)
                let sig = gf.map { 1 / (1 + Foundation.exp(-$0)) }
                var want = [Double](repeating: 0, count: n), wantDU = want, wantDG = want
                for i in 0 ..< n {
                    let silu: Double = gf[i] * sig[i]
                    want[i] = silu * uf[i]
                    wantDU[i] = df[i] * silu
                    let dSilu: Double = sig[i] * (1 + gf[i] * (1 - sig[i]))
                    wantDG[i] = df[i] * uf[i] * dSilu
                }
                for (got, ref, name) in [(out, want, "out"), (du, wantDU, "dUp"), (dg, wantDG, "dGate")] {
                    for i in 0 ..< n {
                        XCTAssertEqual(Double(got[i]), ref[i], accuracy: 1e-6 * max(1, abs(ref[i])),
                                       "\(name)[\(i)] level \(level) n \(n) seed \(seed)")
                    }
                }
            }
        }
    }
    /// loft_lora_row: y += B · (scale · A · x) for one row, against float64,
    /// for ranks below, at and above the 16-lane width, row lengths with and
    /// without a tail and output counts that leave a partial group of 16.
    /// Tolerance: 1e-6 of Σ|terms| per output (the float rounding of the
    /// scaled A·x is inside it), plus the start value's own rounding.
    func testLowRankRowMatchesFloat64() {
        let seed = freshSeed()
        var rng = SeededRandom(seed: seed)
        forEachLevel { level in
            for (k, r, m) in [(576, 16, 576), (33, 1, 7), (100, 8, 40), (64, 17, 33), (700, 33, 129), (16, 16, 16)] {
                let x = (0 ..< k).map { _ in Float(rng.normal()) }
                let a = (0 ..< r * k).map { _ in Float(rng.normal() * 0.1) }
                let b = (0 ..< m * r).map { _ in Float(rng.normal() * 0.1) }
                let start = (0 ..< m).map { _ in Float(rng.normal()) }
                let scale = Float(rng.normal() * 2)
                var y = start
                loft_lora_row(x, k, a, r, b, m, scale, &y)
                var t = [Double](repeating: 0, count: r), tAbs = [Double](repeating: 0, count: r)
                for i in 0 ..< r {
                    for c in 0 ..< k {
                        t[i] += Double(a[i * k + c]) * Double(x[c])
                        tAbs[i] += abs(Double(a[i * k + c]) * Double(x[c]))
                    }
                }
                for j in 0 ..< m {
                    var want = Double(start[j]), mag = abs(Double(start[j]))
                    for i in 0 ..< r {
                        want += Double(b[j * r + i]) * Double(scale) * t[i]
                        mag += abs(Double(b[j * r + i]) * Double(scale)) * tAbs[i]
                    }
                    XCTAssertLessThanOrEqual(abs(Double(y[j]) - want), 1e-6 * mag + 1e-12,
                                             "k \(k) r \(r) m \(m) y[\(j)] level \(level) seed \(seed)")
                }
            }
        }
    }
    /// CPUBackend.addLowRankUpdate splits large adapters over the threads
    /// (A's rows, then B's): the same numbers as one loft_lora_row per row,
    /// bit for bit, for 1 to 3 threads, below and above the split size.
    func testLowRankUpdateSplitEqualsOneRowCall() {
        let seed = freshSeed()
        var rng = SeededRandom(seed: seed)
        let saved = (CPUBackend.threads, CPUBackend.lowRankSplitMinimum)
        defer { (CPUBackend.threads, CPUBackend.lowRankSplitMinimum) = saved }
        CPUBackend.lowRankSplitMinimum = 1024   // the small shapes stay whole, the others split
        for (n, k, r, m) in [(1, 576, 16, 1536), (3, 576, 16, 192), (2, 40, 4, 30), (1, 1536, 33, 576)] {
            let x = (0 ..< n * k).map { _ in Float(rng.normal()) }
            let a = (0 ..< r * k).map { _ in Float(rng.normal() * 0.1) }
            let b = (0 ..< m * r).map { _ in Float(rng.normal() * 0.1) }
            let start = (0 ..< n * m).map { _ in Float(rng.normal()) }
            var want = start
            for row in 0 ..< n {
                want.withUnsafeMutableBufferPointer { loft_lora_row(Array(x[row * k ..< (row + 1) * k]), k, a, r, b, m, 0.5, $0.baseAddress! + row * m) }
            }
            for threads in [1, 2, 3] {
                CPUBackend.threads = threads
                let y = Tensor.cpu(start, shape: [n, m])
                XCTAssertTrue(CPUBackend.shared.addLowRankUpdate(Tensor.cpu(x, shape: [n, k]), a: Tensor.cpu(a, shape: [r, k]),
                                                                 b: Tensor.cpu(b, shape: [m, r]), scale: 0.5, into: y))
                XCTAssertEqual(y.toArray(), want, "n \(n) k \(k) r \(r) m \(m) threads \(threads) seed \(seed)")
            }
        }
    }
    /// The half-precision halves equal the f32 ones run on the same weights
    /// widened from half (widening is exact), bit for bit, on every copy.
    func testLowRankHalvesOnHalfWeightsEqualFloatOnes() {
        let seed = freshSeed()
        var rng = SeededRandom(seed: seed)
        forEachLevel { level in
            for (k, r, m) in [(576, 16, 576), (40, 5, 33), (100, 17, 129)] {
                let x = (0 ..< k).map { _ in Float(rng.normal()) }
                let ah = (0 ..< r * k).map { _ in Float16(Float(rng.normal() * 0.1)).bitPattern }
                let bh = (0 ..< m * r).map { _ in Float16(Float(rng.normal() * 0.1)).bitPattern }
                let (af, bf) = (ah.map { Float(Float16(bitPattern: $0)) }, bh.map { Float(Float16(bitPattern: $0)) })
                var (th, tf) = ([Float](repeating: 0, count: r), [Float](repeating: 0, count: r))
                loft_lora_down_f16(x, k, ah, r, 0.7, &th)
                loft_lora_down(x, k, af, r, 0.7, &tf)
                XCTAssertEqual(th, tf, "down k \(k) r \(r) level \(level) seed \(seed)")
                let start = (0 ..< m).map { _ in Float(rng.normal()) }
                var (yh, yf) = (start, start)
                let count = loft_lora_packed_count(m, r)
                var (ph, pf) = ([UInt16](repeating: 0, count: count), [Float](repeating: 0, count: count))
                loft_lora_pack_f16(bf, m, r, &ph)   // bf holds halves: packing it as half is exact
                loft_lora_pack(bf, m, r, &pf)
                loft_lora_up_f16(tf, r, ph, 0, m, &yh)
                loft_lora_up(tf, r, pf, 0, m, &yf)
                XCTAssertEqual(yh, yf, "up r \(r) m \(m) level \(level) seed \(seed)")
            }
        }
    }
    /// The up pass over pieces of the outputs (any start, any length, as the
    /// cores split a product's rows) gives each output the number the whole
    /// pass gives, bit for bit, and leaves the outputs outside its piece alone.
    func testLowRankUpOverPiecesEqualsWholePass() {
        let seed = freshSeed()
        var rng = SeededRandom(seed: seed)
        forEachLevel { level in
            for (r, m) in [(16, 576), (5, 33), (17, 129), (1, 70)] {
                let t = (0 ..< r).map { _ in Float(rng.normal()) }
                let b = (0 ..< m * r).map { _ in Float(rng.normal() * 0.1) }
                var packed = [Float](repeating: 0, count: loft_lora_packed_count(m, r))
                loft_lora_pack(b, m, r, &packed)
                let start = (0 ..< m).map { _ in Float(rng.normal()) }
                var whole = start
                loft_lora_up(t, r, packed, 0, m, &whole)
                var pieces = start
                var from = 0
                while from < m {
                    let count = min(m - from, Int.random(in: 1 ... 40, using: &rng))
                    var alone = start
                    loft_lora_up(t, r, packed, from, count, &alone)
                    for j in 0 ..< m where j < from || j >= from + count {
                        XCTAssertEqual(alone[j], start[j], "output \(j) outside \(from)..<\(from + count) changed; seed \(seed)")
                    }
                    loft_lora_up(t, r, packed, from, count, &pieces)
                    from += count
                }
                XCTAssertEqual(pieces, whole, "r \(r) m \(m) level \(level) seed \(seed)")
            }
        }
    }
    /// addLowRankUpdates: several adapters' updates in one call (the batched
    /// engine's step; one of them on half weights) give each row exactly what
    /// one loft_lora_row per row gives, for 1 to 3 threads, split or not.
    func testSeveralLowRankUpdatesEqualOneRowCallEach() {
        let seed = freshSeed()
        var rng = SeededRandom(seed: seed)
        let saved = (CPUBackend.threads, CPUBackend.lowRankSplitMinimum)
        defer { (CPUBackend.threads, CPUBackend.lowRankSplitMinimum) = saved }
        let (k, m) = (96, 80)
        let shapes = [(rows: 2, r: 16, half: false), (rows: 1, r: 4, half: true), (rows: 3, r: 9, half: false)]
        let total = shapes.reduce(0) { $0 + $1.rows }
        let x = (0 ..< total * k).map { _ in Float(rng.normal()) }
        let start = (0 ..< total * m).map { _ in Float(rng.normal()) }
        let adapters = shapes.map { s -> ([Float], [Float]) in
            var a = (0 ..< s.r * k).map { _ in Float(rng.normal() * 0.1) }
            var b = (0 ..< m * s.r).map { _ in Float(rng.normal() * 0.1) }
            if s.half { a = a.map { Float(Float16($0)) }; b = b.map { Float(Float16($0)) } }
            return (a, b)
        }
        var want = start
        var row = 0
        for (i, s) in shapes.enumerated() {
            for _ in 0 ..< s.rows {
                want.withUnsafeMutableBufferPointer {
                    loft_lora_row(Array(x[row * k ..< (row + 1) * k]), k, adapters[i].0, s.r, adapters[i].1, m, 0.25, $0.baseAddress! + row * m)
                }
                row += 1
            }
        }
        for (threads, minimum) in [(1, 1 << 30), (2, 1 << 30), (2, 64), (3, 64)] {
            CPUBackend.threads = threads
            CPUBackend.lowRankSplitMinimum = minimum
            let xs = Tensor.cpu(x, shape: [total, k]), y = Tensor.cpu(start, shape: [total, m])
            var updates: [CPUBackend.LowRankUpdate] = []
            var first = 0
            for (i, s) in shapes.enumerated() {
                let a = Tensor.cpu(adapters[i].0, shape: [s.r, k]), b = Tensor.cpu(adapters[i].1, shape: [m, s.r])
                updates.append(.init(x: xs.rows(first ..< first + s.rows), a: a, b: b, packed: s.half ? PackedLoRA(a: a, b: b, half: true) : nil,
                                     scale: 0.25, y: y.rows(first ..< first + s.rows)))
                first += s.rows
            }
            XCTAssertTrue(CPUBackend.shared.addLowRankUpdates(updates))
            XCTAssertEqual(y.toArray(), want, "threads \(threads) split from \(minimum) seed \(seed)")
        }
    }
}
