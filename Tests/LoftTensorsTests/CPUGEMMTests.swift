import XCTest
@testable import LoftTensors
import LoftTestSupport

/// CPUGEMM.bf16 (the AVX512-BF16 kernel, and its round-then-sgemm fallback)
/// against a float64 product of the same inputs rounded to bf16 by the
/// definition below, on fresh random inputs, every transpose combination,
/// sizes that are not multiples of the kernel's blocking (12 x 32 tiles, k
/// blocks of 256, row blocks of 192, column blocks of 1536), odd k, one row.
/// Tolerance: each entry within 1e-5 of |alpha| · Σ_k |a||b| + |beta · c|, the
/// scale of what fp32 accumulation can lose (rounding of at most a few
/// hundred partial sums at 6e-8 each). Matrices sit inside larger NaN-filled
/// buffers (leading dimensions wider than the rows), so reading or writing
/// outside them shows up as NaN.
final class CPUGEMMTests: XCTestCase {
    let tolerance = 1e-5

    /// bf16 rounding from its definition: of the two bf16 values around x
    /// (x truncated to its upper 16 bits, and the next one away from zero),
    /// the nearer; on a tie, the one whose last bit is even.
    func bf16(_ x: Float) -> Double {
        let down = Float(bitPattern: x.bitPattern & 0xFFFF_0000)
        let up = Float(bitPattern: (x.bitPattern & 0xFFFF_0000) &+ 0x10000)
        let dDown = abs(Double(x) - Double(down)), dUp = abs(Double(up) - Double(x))
        if dDown != dUp { return dDown < dUp ? Double(down) : Double(up) }
        return (down.bitPattern >> 16) & 1 == 0 ? Double(down) : Double(up)
    }

    struct Case {
        var m: Int, n: Int, k: Int, transA: Bool, transB: Bool
        var alpha: Float = 1, beta: Float = 0
    }

    /// Runs one case; returns the largest scaled error against the bf16
    /// reference and against the product of the unrounded inputs.
    func run(_ c: Case, bf16Weights: Bool, seed: UInt64) -> (rounded: Double, unrounded: Double) {
        var rng = SeededRandom(seed: seed)
        let (aRows, aCols) = c.transA ? (c.k, c.m) : (c.m, c.k)
        let (bRows, bCols) = c.transB ? (c.n, c.k) : (c.k, c.n)
        let (lda, ldb, ldc) = (aCols + 3, bCols + 5, c.n + 2)
        func strided(_ rows: Int, _ cols: Int, _ ld: Int) -> [Float] {
            var x = [Float](repeating: .nan, count: rows * ld)
            for r in 0 ..< rows { for j in 0 ..< cols { x[r * ld + j] = Float(rng.normal()) } }
            return x
        }
        let a = strided(aRows, aCols, lda)
        var b = strided(bRows, bCols, ldb)
        let c0 = strided(c.m, c.n, ldc)
        if bf16Weights { b = b.map { $0.isNaN ? $0 : Float(bf16($0)) } }  // exactly representable
        let bBits = b.map { UInt16(truncatingIfNeeded: $0.bitPattern >> 16) }
        var out = c.beta == 0 ? [Float](repeating: .nan, count: c0.count) : c0  // beta 0 must not read C
        a.withUnsafeBufferPointer { ap in
            out.withUnsafeMutableBufferPointer { cp in
                if bf16Weights {
                    bBits.withUnsafeBufferPointer { bp in
                        CPUGEMM.bf16(transA: c.transA, transB: c.transB, m: c.m, n: c.n, k: c.k, alpha: c.alpha,
                                     a: ap.baseAddress!, lda: lda, b: bp.baseAddress!, ldb: ldb,
                                     beta: c.beta, c: cp.baseAddress!, ldc: ldc)
                    }
                } else {
                    b.withUnsafeBufferPointer { bp in
                        CPUGEMM.bf16(transA: c.transA, transB: c.transB, m: c.m, n: c.n, k: c.k, alpha: c.alpha,
                                     a: ap.baseAddress!, lda: lda, b: bp.baseAddress!, ldb: ldb,
                                     beta: c.beta, c: cp.baseAddress!, ldc: ldc)
                    }
                }
            }
        }
        var worst = (rounded: 0.0, unrounded: 0.0)
        for i in 0 ..< c.m {
            for j in 0 ..< c.n {
                var sum = 0.0, exact = 0.0, scale = 0.0
                for p in 0 ..< c.k {
                    let x = a[c.transA ? p * lda + i : i * lda + p], y = b[c.transB ? j * ldb + p : p * ldb + j]
                    sum += bf16(x) * bf16(y)
                    exact += Double(x) * Double(y)
                    scale += abs(bf16(x) * bf16(y))
                }
                let alpha = Double(c.alpha), beta = Double(c.beta), old = Double(c0[i * ldc + j])
                let base = c.beta == 0 ? 0 : beta * old
                let denominator = max(abs(alpha) * scale + abs(base), 1e-30)
                let got = Double(out[i * ldc + j])
                worst.rounded = max(worst.rounded, got.isNaN ? .infinity : abs(got - (alpha * sum + base)) / denominator)
                worst.unrounded = max(worst.unrounded, abs(got - (alpha * exact + base)) / denominator)
            }
            for j in c.n ..< ldc where !out[i * ldc + j].isNaN { worst.rounded = .infinity }  // wrote past the row
        }
        return worst
    }

    var cases: [Case] {
        let shapes = [(1, 1, 1), (1, 37, 5), (13, 45, 33), (50, 70, 300), (197, 100, 9), (200, 40, 520), (25, 1571, 40)]
        var all: [Case] = []
        for (s, (m, n, k)) in shapes.enumerated() {
            for transA in [false, true] {
                for transB in [false, true] {
                    // alpha/beta vary with the shape so each combination meets several
                    let (alpha, beta): (Float, Float) = [(1, 0), (0.5, 1), (-1.25, -0.75)][(s + (transA ? 1 : 0)) % 3]
                    all.append(Case(m: m, n: n, k: k, transA: transA, transB: transB, alpha: alpha, beta: beta))
                }
            }
        }
        return all
    }

    func checkAll(kernel: Bool, file: StaticString = #filePath, line: UInt = #line) {
        let (savedKernel, savedThreads) = (CPUGEMM.useBF16Kernel, CPUBackend.threads)
        defer { CPUGEMM.useBF16Kernel = savedKernel; CPUBackend.threads = savedThreads }
        CPUGEMM.useBF16Kernel = kernel
        for threads in [1, 2] {
            CPUBackend.threads = threads
            for c in cases {
                for bf16Weights in [false, true] {
                    let seed = freshSeed()
                    let e = run(c, bf16Weights: bf16Weights, seed: seed)
                    XCTAssertLessThan(e.rounded, tolerance, "\(c) bf16Weights \(bf16Weights) threads \(threads) seed \(seed)",
                                      file: file, line: line)
                    // The inputs really were rounded: with k in the hundreds the
                    // unrounded product is off by far more than the tolerance.
                    if c.k >= 300 {
                        XCTAssertGreaterThan(e.unrounded, 10 * tolerance, "\(c) seed \(seed)", file: file, line: line)
                    }
                }
            }
        }
    }

    func testKernelMatchesFloat64ReferenceOnRoundedInputs() throws {
        try XCTSkipUnless(CPUGEMM.bf16KernelAvailable, "this CPU has no AVX512-BF16")
        checkAll(kernel: true)
    }

    func testFallbackMatchesFloat64ReferenceOnRoundedInputs() {
        checkAll(kernel: false)
    }

    func testReferenceRoundingIsNearestEven() {
        // 1 + 2^-8 lies halfway between bf16 1 and 1 + 2^-7: ties go to even (1).
        XCTAssertEqual(bf16(1 + 0x1p-8), 1)
        // 1 + 3·2^-8 lies halfway between 1 + 2^-7 (odd) and 1 + 2^-6: to 1 + 2^-6.
        XCTAssertEqual(bf16(1 + 3 * 0x1p-8), 1 + 0x1p-6)
        XCTAssertEqual(bf16(-(1 + 0x1p-8 + 0x1p-20)), -(1 + 0x1p-7))
    }
}
