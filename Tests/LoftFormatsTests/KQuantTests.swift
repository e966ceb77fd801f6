import Foundation
import LoftFormats
import LoftTestSupport
import XCTest

/// The block quantizers against bytes written by ggml itself
/// (`tools/make_kquant_fixtures.py` calls ggml_quantize_chunk in the libggml
/// that llama-cpp-python ships), and their round-trip error on fresh random rows.
final class KQuantTests: XCTestCase {
    static let types: [(String, GGMLType)] = [("Q4_0", .q4_0), ("Q4_1", .q4_1), ("Q5_0", .q5_0), ("Q5_1", .q5_1),
                                               ("Q8_0", .q8_0), ("Q4_K", .q4_K), ("Q5_K", .q5_K), ("Q6_K", .q6_K)]

    func testQuantizersMatchGGMLReferenceBytes() throws {
        let dir = TestPaths.fixtures.appendingPathComponent("kquants")
        let meta = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("meta.json"))) as! [String: Any]
        let rowLength = meta["row_length"] as! Int
        let raw = try Data(contentsOf: dir.appendingPathComponent("input.f32"))
        let input: [Float] = raw.withUnsafeBytes { p in (0 ..< raw.count / 4).map { Float(bitPattern: p.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self).littleEndian) } }
        XCTAssertEqual(input.count, rowLength * (meta["rows"] as! Int))
        for (name, type) in Self.types {
            let want = [UInt8](try Data(contentsOf: dir.appendingPathComponent("\(name).bin")))
            let got = try GGMLQuantizer.encode(input, rowLength: rowLength, as: type)
            XCTAssertEqual(got.count, want.count, name)
            if let first = zip(got, want).enumerated().first(where: { $0.element.0 != $0.element.1 })?.offset {
                let blockBytes = type.blockLayout.bytes
                XCTFail("\(name): first differing byte \(first) (block \(first / blockBytes), byte \(first % blockBytes) in it)")
            }
        }
    }

    /// Round trip through Loft's dequantizer (bit-exact with gguf-py) on fresh
    /// random rows: the error relative to the row's RMS, computed in float64,
    /// stays under each type's bound, and llama.cpp's test-quantize-fns bound
    /// (rmse/n < 0.002 on 0.1 + 2·cos(i)) holds.
    func testRoundTripErrorOnFreshRandomRows() throws {
        let seed = UInt64.random(in: 0 ... UInt64.max)
        var rng = SeededRandom(seed: seed)
        let rows = 16, rowLength = 768
        var x = [Float](repeating: 0, count: rows * rowLength)
        for r in 0 ..< rows {
            let scale = [0.02, 1, 1e-3, 30][r % 4]
            for j in 0 ..< rowLength {
                var v = rng.normal() * scale
                if r % 5 == 4 { v = abs(v) }              // one-signed rows
                if rng.next() % 97 == 0 { v *= 8 }          // occasional outliers
                x[r * rowLength + j] = Float(v)
            }
        }
        // Relative RMS error bounds: 1.5x the worst ggml itself reaches on 960 rows
        // drawn the same way (60 seeds); a broken layout gives errors near 1.
        let bounds: [GGMLType: Double] = [.q8_0: 0.017, .q4_0: 0.27, .q4_1: 0.19, .q5_0: 0.13, .q5_1: 0.09,
                                          .q4_K: 0.17, .q5_K: 0.085, .q6_K: 0.05]
        for (name, type) in Self.types {
            let back = try roundTrip(x, rowLength: rowLength, type)
            for r in 0 ..< rows {
                var err = 0.0, ms = 0.0
                for j in 0 ..< rowLength {
                    let a = Double(x[r * rowLength + j]), b = Double(back[r * rowLength + j])
                    err += (a - b) * (a - b); ms += a * a
                }
                let rel = (err / ms).squareRoot()
                XCTAssertLessThan(rel, bounds[type]!, "\(name) row \(r), seed \(seed)")
                XCTAssertGreaterThan(rel, 0, "\(name) is lossy; a zero error means the check is broken")
            }
            let n = 32 * 128
            let c = (0 ..< n).map { Float(0.1 + 2 * cos(Double($0))) }
            let cb = try roundTrip(c, rowLength: n, type)
            let total = zip(c, cb).map { Double($0 - $1) * Double($0 - $1) }.reduce(0, +).squareRoot() / Double(n)
            XCTAssertLessThan(total, 0.002, "\(name): test-quantize-fns' MAX_QUANTIZATION_TOTAL_ERROR")
        }
    }

    func testAllZeroRowsAndBadShapes() throws {
        for (name, type) in Self.types {
            let back = try roundTrip([Float](repeating: 0, count: 512), rowLength: 256, type)
            XCTAssertEqual(back, [Float](repeating: 0, count: 512), name)
        }
        XCTAssertThrowsError(try GGMLQuantizer.encode([Float](repeating: 1, count: 576), rowLength: 576, as: .q4_K)) {
            XCTAssertTrue("\($0)".contains("576") && "\($0)".contains("256"), "\($0)")
        }
    }

    func roundTrip(_ x: [Float], rowLength: Int, _ type: GGMLType) throws -> [Float] {
        let q = try GGMLQuantizer.encode(x, rowLength: rowLength, as: type)
        var back = [Float](repeating: .nan, count: x.count)
        try q.withUnsafeBytes { p in
            try back.withUnsafeMutableBufferPointer { try GGMLDequantizer.dequantize(type, from: p.baseAddress!, count: x.count, into: $0.baseAddress!) }
        }
        return back
    }
}
