import Foundation
import XCTest
@testable import LoftFormats

/// GGUFWriter and GGMLQuantizer: what is written reads back through GGUFFile,
/// and the quantizers produce the bytes of the `gguf` package's reference
/// quantizers (fixture by tools/check_gguf_export.py quant).
final class GGUFWriterTests: XCTestCase {
    func temp(_ name: String) -> String {
        let p = FileManager.default.temporaryDirectory.appendingPathComponent("loft-ggufw-\(UUID().uuidString)-\(name)").path
        addTeardownBlock { try? FileManager.default.removeItem(atPath: p) }
        return p
    }

    func testMetadataOfEveryTypeAndExactTensorsRoundTrip() throws {
        var w = GGUFWriter()
        let meta: [(String, GGUFValue)] = [
            ("general.architecture", .string("llama")), ("t.u8", .uint8(200)), ("t.i8", .int8(-100)),
            ("t.u16", .uint16(60000)), ("t.i16", .int16(-30000)), ("t.u32", .uint32(4_000_000_000)),
            ("t.i32", .int32(-2_000_000_000)), ("t.u64", .uint64(1 << 60)), ("t.i64", .int64(-(1 << 60))),
            ("t.f32", .float32(1.5e-5)), ("t.f64", .float64(-2.25e300)), ("t.bool", .bool(true)),
            ("t.str", .string("héllo ✓ \n")), ("t.strs", .array([.string("a"), .string(""), .string("Ġthe")])),
            ("t.ints", .array([.int32(1), .int32(-2)])), ("t.nested", .array([.array([.uint8(1)]), .array([.uint8(2), .uint8(3)])])),
            ("t.empty", .array([])),
        ]
        for (k, v) in meta { w.set(k, v) }
        let f32: [Float] = (0 ..< 96).map { Float($0) * 0.37 - 11 }
        let odd: [Float] = (0 ..< 7).map { Float($0) / 3 }
        try w.addTensor(name: "a.f32", shape: [3, 32], type: .f32, data: GGMLQuantizer.encode(f32, rowLength: 32, as: .f32))
        try w.addTensor(name: "b.f16", shape: [3, 32], type: .f16, data: GGMLQuantizer.encode(f32, rowLength: 32, as: .f16))
        try w.addTensor(name: "c.odd", shape: [7], type: .f32, data: GGMLQuantizer.encode(odd, rowLength: 7, as: .f32))
        try w.addTensor(name: "d.bf16", shape: [96], type: .bf16, data: GGMLQuantizer.encode(f32, rowLength: 96, as: .bf16))
        let path = temp("rt.gguf")
        try w.write(to: path)
        let r = try GGUFFile(path: path)
        XCTAssertEqual(r.version, 3)
        XCTAssertEqual(r.metadataKeys, meta.map(\.0))
        for (k, v) in meta where k != "t.empty" { XCTAssertEqual(r.metadata[k], v, k) }
        XCTAssertEqual(r.metadata["t.empty"]?.array?.count, 0)
        XCTAssertEqual(r.tensors.map(\.name), ["a.f32", "b.f16", "c.odd", "d.bf16"])
        for t in r.tensors { XCTAssertEqual(t.offset % 32, 0, "\(t.name) is aligned to 32") }
        XCTAssertEqual(r.tensor(named: "a.f32")?.shape, [3, 32])
        XCTAssertEqual(r.tensor(named: "a.f32")?.dimensions, [32, 3])
        XCTAssertEqual(try r.dequantize(r.tensor(named: "a.f32")!), f32)
        XCTAssertEqual(try r.dequantize(r.tensor(named: "c.odd")!), odd)
        // F16 / BF16: exactly the round-to-nearest-even conversions.
        XCTAssertEqual(try r.dequantize(r.tensor(named: "b.f16")!), f32.map { Float(Float16($0)) })
        let bf = try r.dequantize(r.tensor(named: "d.bf16")!)
        for (g, x) in zip(bf, f32) {
            XCTAssertEqual(g, Float(bitPattern: UInt32(GGMLQuantizer.bf16Bits(x)) << 16))
            XCTAssertLessThanOrEqual(abs(g - x), abs(x) / 256)
        }
    }

    struct QuantReference: Decodable {
        let input: [Float]
        let q8_0: String, q4_0: String
    }

    static func hex(_ s: String) -> [UInt8] {
        var out: [UInt8] = []
        var it = s.utf8.makeIterator()
        func nib(_ c: UInt8) -> UInt8 { c <= 57 ? c - 48 : c - 87 }
        while let a = it.next(), let b = it.next() { out.append(nib(a) << 4 | nib(b)) }
        return out
    }

    func testQuantizersMatchGGUFPackageBytes() throws {
        let ref = try JSONDecoder().decode(QuantReference.self, from: Data(contentsOf: TestPaths.fixtures.appendingPathComponent("gguf_writer/quant_reference.json")))
        for (type, want) in [(GGMLType.q8_0, ref.q8_0), (.q4_0, ref.q4_0)] {
            let got = try GGMLQuantizer.encode(ref.input, rowLength: ref.input.count, as: type)
            let expected = Self.hex(want)
            XCTAssertEqual(got.count, expected.count, "\(type)")
            let firstDiff = zip(got, expected).enumerated().first { $0.element.0 != $0.element.1 }?.offset
            XCTAssertNil(firstDiff, "\(type): first differing byte at \(firstDiff ?? -1)")
        }
    }

    /// llama.cpp's tests/test-quantize-fns.cpp: on 32·128 values 0.1 + 2·cos(i),
    /// `array_rmse` (sqrt(Σ(x−x̂)²) / n) of quantize→dequantize must stay below
    /// MAX_QUANTIZATION_TOTAL_ERROR = 0.002.
    func testQuantizationErrorWithinTestQuantizeFnsBound() throws {
        let n = 32 * 128
        let x = (0 ..< n).map { Float(0.1 + 2 * cos(Double($0))) }
        for type in [GGMLType.q8_0, .q4_0] {
            let q = try GGMLQuantizer.encode(x, rowLength: n, as: type)
            var back = [Float](repeating: 0, count: n)
            try q.withUnsafeBytes { p in
                try back.withUnsafeMutableBufferPointer { try GGMLDequantizer.dequantize(type, from: p.baseAddress!, count: n, into: $0.baseAddress!) }
            }
            let err = Float((zip(x, back).map { Double($0 - $1) * Double($0 - $1) }.reduce(0, +)).squareRoot()) / Float(n)
            XCTAssertLessThan(err, 0.002, "\(type)")
            XCTAssertGreaterThan(err, 0, "\(type) is lossy; a zero error means the check is broken")
        }
    }

    func testBadInputsAreRefusedWithTheFix() throws {
        XCTAssertThrowsError(try GGMLQuantizer.encode([Float](repeating: 1, count: 33), rowLength: 33, as: .q8_0)) {
            XCTAssertTrue("\($0)".contains("blocks"), "\($0)")
        }
        XCTAssertThrowsError(try GGMLQuantizer.encode([1, .nan], rowLength: 2, as: .f32))
        XCTAssertThrowsError(try GGMLQuantizer.encode([1e6], rowLength: 1, as: .f16)) { XCTAssertTrue("\($0)".contains("BF16")) }
        XCTAssertThrowsError(try GGMLQuantizer.encode([1], rowLength: 1, as: .q6_K)) { XCTAssertTrue("\($0)".contains("blocks"), "\($0)") }
        XCTAssertThrowsError(try GGMLQuantizer.encode([Float](repeating: 1, count: 256), rowLength: 256, as: .q3_K)) {
            XCTAssertTrue("\($0)".contains("cannot write"), "\($0)")
        }
        var w = GGUFWriter()
        try w.addTensor(name: "x", shape: [2], type: .f32, data: [UInt8](repeating: 0, count: 8))
        XCTAssertThrowsError(try w.addTensor(name: "x", shape: [2], type: .f32, data: [UInt8](repeating: 0, count: 8)))
        XCTAssertThrowsError(try w.addTensor(name: "y", shape: [3], type: .f32, data: [UInt8](repeating: 0, count: 8)))
        w.set("mixed", .array([.uint8(1), .string("a")]))
        XCTAssertThrowsError(try w.serialized())
        XCTAssertThrowsError(try GGUFWriter().write(to: "/nonexistent-dir/x.gguf")) { XCTAssertTrue("\($0)".contains("does not exist")) }
    }
}
