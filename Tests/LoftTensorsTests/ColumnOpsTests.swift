import XCTest
@testable import LoftTensors
import LoftTestSupport

/// scaleColumns and columnDots (DoRA's per-output-feature operations)
/// against float64 references on fresh random inputs. Tolerance 1e-6 of the
/// largest magnitude: scaleColumns is one f32 product per element (plus one
/// add with accumulate); columnDots sums in double and rounds once.
final class ColumnOpsTests: XCTestCase {
    let cpu = CPUBackend.shared

    func testScaleColumns() {
        let seed = freshSeed()
        var rng = SeededRandom(seed: seed)
        let (n, m) = (9, 37)
        let x = rng.normals(n * m), s = rng.normals(m), y0 = rng.normals(n * m)
        let want = (0 ..< n * m).map { x[$0] * s[$0 % m] }
        let y = Tensor.cpu(floats(y0), shape: [n, m])
        cpu.scaleColumns(Tensor.cpu(floats(x), shape: [n, m]), by: Tensor.cpu(floats(s), shape: [m]), into: y, accumulate: false)
        XCTAssertLessThan(relativeError(y.toArray(), want), 1e-6, "seed \(seed)")
        cpu.scaleColumns(Tensor.cpu(floats(x), shape: [n, m]), by: Tensor.cpu(floats(s), shape: [m]), into: y, accumulate: true)
        XCTAssertLessThan(relativeError(y.toArray(), want.map { 2 * $0 }), 1e-6, "seed \(seed)")
        // in place: y aliases x
        let inPlace = Tensor.cpu(floats(x), shape: [n, m])
        cpu.scaleColumns(inPlace, by: Tensor.cpu(floats(s), shape: [m]), into: inPlace, accumulate: false)
        XCTAssertLessThan(relativeError(inPlace.toArray(), want), 1e-6, "seed \(seed)")
    }

    func testColumnDots() {
        let seed = freshSeed()
        var rng = SeededRandom(seed: seed)
        let (n, m) = (23, 150)
        let a = rng.normals(n * m), b = rng.normals(n * m), start = rng.normals(m)
        let want = (0 ..< m).map { j in (0 ..< n).reduce(0.0) { $0 + Double(Float(a[$1 * m + j])) * Double(Float(b[$1 * m + j])) } }
        let out = Tensor.cpu(floats(start), shape: [m])
        cpu.columnDots(Tensor.cpu(floats(a), shape: [n, m]), Tensor.cpu(floats(b), shape: [n, m]), into: out, accumulate: false)
        XCTAssertLessThan(relativeError(out.toArray(), want), 1e-6, "seed \(seed)")
        cpu.columnDots(Tensor.cpu(floats(a), shape: [n, m]), Tensor.cpu(floats(b), shape: [n, m]), into: out, accumulate: true)
        XCTAssertLessThan(relativeError(out.toArray(), want.map { 2 * $0 }), 1e-6, "seed \(seed)")
    }
}
