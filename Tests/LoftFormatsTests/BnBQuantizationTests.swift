import Foundation
import XCTest
import LoftTestSupport
@testable import LoftFormats

/// NF4/FP4 (± double quantization) and LLM.int8 rows against bitsandbytes 0.50
/// on CPU: Fixtures/bnb/*.safetensors were written by
/// tools/make_quant_fixtures.py. Tolerance: none — packed bytes, absmax codes
/// and every dequantized value are compared by bit pattern. (bnb's CPU
/// dequantizer mis-indexes blocks when a row is a multiple of 32 but not of
/// 64; the fixtures avoid such rows, Loft uses the flat blocks bnb quantizes with.)
final class BnBQuantizationTests: XCTestCase {
    static let dir = TestPaths.fixtures.appendingPathComponent("bnb")
    static let cases = ["square_64x64", "rows_33x70", "odd_17x33", "nested_2blocks_128x130", "zero_block_8x90"]

    func open(_ name: String) throws -> SafetensorsFile {
        try SafetensorsFile(path: Self.dir.appendingPathComponent(name + ".safetensors").path)
    }

    func bytes(_ f: SafetensorsFile, _ name: String) throws -> [UInt8] { Array(try f.require(name).bytes) }

    /// `zeroSignFree`: +0 and −0 count as equal (bnb's two CPU dequant
    /// kernels disagree on the sign of FP4's zero code 8).
    func assertBitsEqual(_ got: [Float], _ want: [Float], _ what: String, zeroSignFree: Bool = false,
                         file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(got.count, want.count, "\(what): element count", file: file, line: line)
        var bad = 0
        for i in 0 ..< min(got.count, want.count) where got[i].bitPattern != want[i].bitPattern
            && !(zeroSignFree && got[i] == 0 && want[i] == 0) {
            if bad < 5 { XCTFail("\(what)[\(i)]: got \(got[i]) want \(want[i])", file: file, line: line) }
            bad += 1
        }
        if bad > 5 { XCTFail("\(what): \(bad) elements differ", file: file, line: line) }
    }

    func testDynamicMapIsBitsandbytes() throws {
        assertBitsEqual(BnBQuantizer.dynamicMap, try open("square_64x64").floats(named: "code2"), "dynamic map")
    }

    func testFourBitMatchesBitsandbytes() throws {
        for name in Self.cases {
            let f = try open(name)
            let info = try f.require("weight")
            let (rows, cols) = (info.shape[0], info.shape[1])
            let w = info.floats()
            for type in BnB4BitType.allCases {
                let t = type.rawValue
                let q = BnBQuantizer.quantize4bit(w, rows: rows, cols: cols, type: type, doubleQuant: false)
                XCTAssertEqual(q.packed, try bytes(f, "\(t).packed"), "\(name) \(t) packed")
                assertBitsEqual(q.blockScales(), try f.floats(named: "\(t).absmax"), "\(name) \(t) absmax")
                assertBitsEqual(q.dequantized(), try f.floats(named: "\(t).dequant"), "\(name) \(t) dequant", zeroSignFree: type == .fp4)

                let d = BnBQuantizer.quantize4bit(w, rows: rows, cols: cols, type: type, doubleQuant: true)
                XCTAssertEqual(d.packed, try bytes(f, "\(t)_dq.packed"), "\(name) \(t) double-quant packed")
                guard case .double(let codes, let absmax2, let offset) = d.absmax else { return XCTFail("not double-quantized") }
                assertBitsEqual([offset], try f.floats(named: "\(t)_dq.offset"), "\(name) \(t) offset")
                XCTAssertEqual(codes, try bytes(f, "\(t)_dq.absmax_q"), "\(name) \(t) absmax codes")
                assertBitsEqual(absmax2, try f.floats(named: "\(t)_dq.absmax2"), "\(name) \(t) absmax2")
                assertBitsEqual(d.dequantized(), try f.floats(named: "\(t)_dq.dequant"), "\(name) \(t) double-quant dequant",
                                zeroSignFree: type == .fp4)
            }
        }
    }

    func testInt8RowsMatchBitsandbytes() throws {
        for name in Self.cases {
            let f = try open(name)
            let info = try f.require("weight")
            let q = BnBQuantizer.quantizeInt8Rows(info.floats(), rows: info.shape[0], cols: info.shape[1])
            XCTAssertEqual(q.cb.map { UInt8(bitPattern: $0) }, try bytes(f, "int8.cb"), "\(name) CB")
            assertBitsEqual(q.scb, try f.floats(named: "int8.scb"), "\(name) SCB")
            assertBitsEqual(q.dequantized(), try f.floats(named: "int8.dequant"), "\(name) int8 dequant")
        }
    }

    /// Fresh random matrices against a float64 reference of the rule itself:
    /// every element takes the level nearest to w/absmax (up to the f32
    /// rounding of the scaled value, 1e-6), and dequantizes to level · absmax.
    func testFourBitPicksTheNearestLevel() {
        let seed = UInt64.random(in: 0 ... UInt64.max)
        var rng = SeededRandom(seed: seed)
        for type in BnB4BitType.allCases {
            let (rows, cols) = (Int.random(in: 1 ... 40, using: &rng), Int.random(in: 1 ... 150, using: &rng))
            let w = rng.normals(rows * cols, scale: 0.1).map(Float.init)
            let q = BnBQuantizer.quantize4bit(w, rows: rows, cols: cols, type: type, doubleQuant: false)
            let table = BnBQuantizer.table(type), scales = q.blockScales(), deq = q.dequantized()
            for i in 0 ..< w.count {
                let block = i / 64
                let m = w[(block * 64) ..< min(w.count, block * 64 + 64)].map { abs(Double($0)) }.max()!
                XCTAssertEqual(Double(scales[block]), m, "seed \(seed): absmax of block \(block)")
                let x = m == 0 ? 0 : Double(w[i]) / m
                let code = Int((i & 1) == 0 ? q.packed[i >> 1] >> 4 : q.packed[i >> 1] & 15)
                let best = table.map { abs(Double($0) - x) }.min()!
                XCTAssertLessThanOrEqual(abs(Double(table[code]) - x), best + 1e-6, "seed \(seed): \(type) element \(i)")
                XCTAssertEqual(Double(deq[i]), Double(table[code]) * m, accuracy: abs(Double(table[code]) * m) * 1e-7,
                               "seed \(seed): \(type) dequant \(i)")
            }
        }
    }

    /// torch's cascade mean against the float64 mean (it is accurate, only
    /// its last bit follows torch's order), and double quantization's scales
    /// within the 8-bit map's resolution of the plain ones.
    func testDoubleQuantizedScalesStayClose() {
        let seed = UInt64.random(in: 0 ... UInt64.max)
        var rng = SeededRandom(seed: seed)
        let n = Int.random(in: 1 ... 5000, using: &rng)
        let x = (0 ..< n).map { _ in Float(Double.random(in: 0.01 ... 3, using: &rng)) }
        let exact = x.reduce(0.0) { $0 + Double($1) } / Double(n)
        XCTAssertEqual(Double(BnBQuantizer.torchMean(x)), exact, accuracy: exact * 1e-6, "seed \(seed)")
        let w = rng.normals(300 * 64, scale: 0.05).map(Float.init)
        let plain = BnBQuantizer.quantize4bit(w, rows: 300, cols: 64, type: .nf4, doubleQuant: false).blockScales()
        let nested = BnBQuantizer.quantize4bit(w, rows: 300, cols: 64, type: .nf4, doubleQuant: true).blockScales()
        let spread = plain.map { abs($0 - plain.reduce(0, +) / Float(plain.count)) }.max()!
        for i in plain.indices {
            // the dynamic map's coarsest step near ±1 is 1/64 of the block's range
            XCTAssertEqual(nested[i], plain[i], accuracy: spread / 50 + 1e-7, "seed \(seed): scale \(i)")
        }
    }

    func testInt8RowsRoundTrip() {
        let seed = UInt64.random(in: 0 ... UInt64.max)
        var rng = SeededRandom(seed: seed)
        let (rows, cols) = (Int.random(in: 1 ... 20, using: &rng), Int.random(in: 1 ... 200, using: &rng))
        var w = rng.normals(rows * cols, scale: 0.2).map(Float.init)
        for j in 0 ..< cols { w[j] = 0 }  // an all-zero row stays zero instead of 0·∞
        let q = BnBQuantizer.quantizeInt8Rows(w, rows: rows, cols: cols)
        let d = q.dequantized()
        for r in 0 ..< rows {
            let m = (0 ..< cols).map { abs(Double(w[r * cols + $0])) }.max()!
            for j in 0 ..< cols {
                // fp16 rounding of the weight (2⁻¹¹ relative) plus half an int8 step
                XCTAssertEqual(Double(d[r * cols + j]), Double(w[r * cols + j]), accuracy: m / 254 + m * 1e-3 + 1e-12,
                               "seed \(seed): [\(r), \(j)]")
            }
        }
    }
}
