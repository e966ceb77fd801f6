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
}
