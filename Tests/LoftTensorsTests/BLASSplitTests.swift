import XCTest
@testable import LoftTensors
import LoftTestSupport

/// BLAS.sgemm and BLAS.sgemv split over Loft's threads (by rows of C, by
/// columns when C is short, by output for GEMV) against float64 products of
/// the same inputs, for 1, 2 and 3 threads and every transpose, with leading
/// dimensions wider than the matrices and a nonzero beta, so a piece that
/// reads or writes the wrong block shows up. Tolerance 1e-5 of
/// |alpha| Σ|a||b| + |beta c| per entry (fp32 accumulation over k ≤ 300).
final class BLASSplitTests: XCTestCase {
    func testSplitGEMMMatchesFloat64() {
        let saved = CPUBackend.threads
        defer { CPUBackend.threads = saved }
        // (m, n, k): tall (split by rows), short and wide (split by columns), odd sizes.
        let shapes = [(300, 200, 100), (20, 900, 150), (129, 77, 301)]
        for threads in [1, 2, 3] {
            CPUBackend.threads = threads
            for (m, n, k) in shapes {
                XCTAssertGreaterThanOrEqual(m * n * k, BLAS.splitMinimumMACs, "the shape is large enough to be split")
                for transA in [false, true] { for transB in [false, true] {
                    let seed = freshSeed()
                    var rng = SeededRandom(seed: seed)
                    let (aRows, aCols) = transA ? (k, m) : (m, k)
                    let (bRows, bCols) = transB ? (n, k) : (k, n)
                    let (lda, ldb, ldc) = (aCols + 3, bCols + 5, n + 2)
                    let a = (0 ..< aRows * lda).map { _ in Float(rng.normal()) }
                    let b = (0 ..< bRows * ldb).map { _ in Float(rng.normal()) }
                    var c = (0 ..< m * ldc).map { _ in Float(rng.normal()) }
                    let c0 = c
                    let (alpha, beta): (Float, Float) = (0.75, -0.5)
                    func aAt(_ i: Int, _ t: Int) -> Double { Double(transA ? a[t * lda + i] : a[i * lda + t]) }
                    func bAt(_ t: Int, _ j: Int) -> Double { Double(transB ? b[j * ldb + t] : b[t * ldb + j]) }
                    a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in c.withUnsafeMutableBufferPointer { cp in
                        BLAS.sgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: ap.baseAddress!, lda: lda,
                                   b: bp.baseAddress!, ldb: ldb, beta: beta, c: cp.baseAddress!, ldc: ldc)
                    } } }
                    var worst = 0.0
                    for i in 0 ..< m { for j in 0 ..< ldc {
                        if j >= n { XCTAssertEqual(c[i * ldc + j], c0[i * ldc + j], "padding untouched"); continue }
                        var s = 0.0, scale = 0.0
                        for t in 0 ..< k { s += aAt(i, t) * bAt(t, j); scale += abs(aAt(i, t) * bAt(t, j)) }
                        let want = Double(alpha) * s + Double(beta) * Double(c0[i * ldc + j])
                        let bound = Double(abs(alpha)) * scale + abs(Double(beta) * Double(c0[i * ldc + j]))
                        worst = max(worst, abs(Double(c[i * ldc + j]) - want) / bound)
                    } }
                    XCTAssertLessThan(worst, 1e-5, "m \(m) n \(n) k \(k) transA \(transA) transB \(transB) threads \(threads) seed \(seed)")
                } }
            }
        }
    }

    func testSplitGEMVMatchesFloat64() {
        let saved = CPUBackend.threads
        defer { CPUBackend.threads = saved }
        let (rows, cols, lda) = (1500, 700, 703)
        XCTAssertGreaterThanOrEqual(rows * cols, BLAS.splitMinimumMACs / 4, "the shape is large enough to be split")
        for threads in [1, 2, 3] {
            CPUBackend.threads = threads
            for trans in [false, true] {
                let seed = freshSeed()
                var rng = SeededRandom(seed: seed)
                let a = (0 ..< rows * lda).map { _ in Float(rng.normal()) }
                let (inputs, outputs) = trans ? (rows, cols) : (cols, rows)
                let x = (0 ..< inputs).map { _ in Float(rng.normal()) }
                var y = (0 ..< outputs).map { _ in Float(rng.normal()) }
                let y0 = y
                BLAS.sgemv(trans: trans, rows: rows, cols: cols, alpha: 1.5, a: a, lda: lda, x: x, beta: 0.25, y: &y)
                var worst = 0.0
                for o in 0 ..< outputs {
                    var s = 0.0, scale = 0.0
                    for t in 0 ..< inputs {
                        let p = Double(trans ? a[t * lda + o] : a[o * lda + t]) * Double(x[t])
                        s += p; scale += abs(p)
                    }
                    let want = 1.5 * s + 0.25 * Double(y0[o])
                    worst = max(worst, abs(Double(y[o]) - want) / (1.5 * scale + abs(0.25 * Double(y0[o]))))
                }
                XCTAssertLessThan(worst, 1e-5, "trans \(trans) threads \(threads) seed \(seed)")
            }
        }
    }
}
