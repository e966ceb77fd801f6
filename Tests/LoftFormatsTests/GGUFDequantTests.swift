import Foundation
import XCTest
@testable import LoftFormats

/// Dequantization against gguf-py (`gguf.quants.dequantize`, gguf 0.19): the
/// fixtures in Fixtures/gguf were written by tools/make_format_fixtures.py.
/// Tolerance: none. Every output is compared by bit pattern, since our loops do
/// the same float operations in the same order as gguf-py's numpy code.
final class GGUFDequantTests: XCTestCase {
    static let dir = TestPaths.fixtures.appendingPathComponent("gguf")

    static func json(_ name: String) throws -> [String: Any] {
        let data = try Data(contentsOf: dir.appendingPathComponent(name))
        return try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    static func floats(_ name: String) throws -> [Float] {
        let data = try Data(contentsOf: dir.appendingPathComponent(name))
        return data.withUnsafeBytes { raw in
            (0 ..< raw.count / 4).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) }
        }
    }

    /// Bit-exact comparison; reports the first few differences.
    func assertBitsEqual(_ got: [Float], _ want: [Float], _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(got.count, want.count, "\(what): element count", file: file, line: line)
        var bad = 0
        for i in 0 ..< min(got.count, want.count) where got[i].bitPattern != want[i].bitPattern {
            if bad < 5 { XCTFail("\(what)[\(i)]: got \(got[i]) want \(want[i])", file: file, line: line) }
            bad += 1
        }
        XCTAssertEqual(bad, 0, "\(what): \(bad) elements differ", file: file, line: line)
    }

    func testEveryTypeMatchesGGUFPy() throws {
        let meta = try Self.json("dequant.json")
        // Every supported type has a fixture, so a new type cannot go untested.
        XCTAssertEqual(Set(meta.keys), Set(GGMLDequantizer.supportedTypes.map(\.description)))
        for (name, value) in meta.sorted(by: { $0.key < $1.key }) {
            let entry = try XCTUnwrap(value as? [String: Any])
            let type = try XCTUnwrap(GGMLType(rawValue: UInt32(try XCTUnwrap(entry["type"] as? Int))))
            XCTAssertEqual(type.description, name)
            let raw = try Data(contentsOf: Self.dir.appendingPathComponent("\(name).blocks"))
            let want = try Self.floats("\(name).f32")
            XCTAssertEqual(type.byteCount(elements: want.count), raw.count, name)
            var got = [Float](repeating: .nan, count: want.count)
            try raw.withUnsafeBytes { src in
                try got.withUnsafeMutableBufferPointer { dst in
                    try GGMLDequantizer.dequantize(type, from: src.baseAddress!, count: want.count, into: dst.baseAddress!)
                }
            }
            assertBitsEqual(got, want, name)
        }
    }

    /// Blocks read at odd addresses (as in a GGUF file, where 18-byte Q4_0 blocks
    /// leave fp16 scales unaligned) give the same result.
    func testUnalignedSource() throws {
        for name in ["Q4_0", "Q5_0", "Q8_0", "Q3_K", "Q6_K", "F32", "BF16"] {
            let type = try XCTUnwrap(GGMLType.allCases.first { $0.description == name })
            let raw = try Data(contentsOf: Self.dir.appendingPathComponent("\(name).blocks"))
            let want = try Self.floats("\(name).f32")
            let shifted = [UInt8](repeating: 0, count: 3) + [UInt8](raw)
            var got = [Float](repeating: .nan, count: want.count)
            try shifted.withUnsafeBytes { src in
                try got.withUnsafeMutableBufferPointer { dst in
                    try GGMLDequantizer.dequantize(type, from: src.baseAddress! + 3, count: want.count, into: dst.baseAddress!)
                }
            }
            assertBitsEqual(got, want, "\(name) unaligned")
        }
    }

    /// The bulk F16 path's bit trick against Swift's own Float16 → Float (compiler-rt)
    /// for every half. Signaling NaNs are the one difference: Swift quiets them,
    /// numpy (gguf-py's F16 path, checked by the F16 fixture) keeps the payload
    /// as is, and so do we.
    func testHalfConversionAllInputs() {
        var bad = 0
        for h in 0 ... UInt16.max {
            let signaling = h & 0x7C00 == 0x7C00 && h & 0x03FF != 0 && h & 0x0200 == 0
            let want = signaling ? Float(bitPattern: UInt32(h & 0x8000) << 16 | 0x7F80_0000 | UInt32(h & 0x03FF) << 13)
                                 : Float(Float16(bitPattern: h))
            let got = GGMLDequantizer.halfBitsToFloat(h)
            if got.bitPattern != want.bitPattern {
                if bad < 5 { XCTFail("half 0x\(String(h, radix: 16)): got 0x\(String(got.bitPattern, radix: 16)) want 0x\(String(want.bitPattern, radix: 16))") }
                bad += 1
            }
        }
        XCTAssertEqual(bad, 0)
    }

    func testUnsupportedTypeThrowsAndNamesIt() throws {
        var out = [Float](repeating: 0, count: 256)
        let src = [UInt8](repeating: 0, count: 1024)
        XCTAssertThrowsError(try GGMLDequantizer.dequantize(.iq2_xxs, from: src, count: 256, into: &out)) { error in
            let message = (error as? FormatError)?.message ?? ""
            XCTAssertTrue(message.contains("IQ2_XXS"), message)
            XCTAssertTrue(message.contains("Q4_K") && message.contains("Q8_0"), "lists the supported types: \(message)")
        }
        XCTAssertThrowsError(try GGMLDequantizer.dequantize(.q4_0, from: src, count: 33, into: &out)) { error in
            XCTAssertTrue((error as? FormatError)?.message.contains("block") == true, "\(error)")
        }
    }

    // MARK: - the real model

    func testSmolLM2TensorsMatchGGUFPy() throws {
        let f = try GGUFFile(path: TestPaths.smolLM2)
        let expected = try Self.json("smollm2_dequant.json")
        XCTAssertEqual(expected.count, 5)
        for (name, value) in expected {
            let e = try XCTUnwrap(value as? [String: Any])
            let info = try XCTUnwrap(f.tensor(named: name), name)
            XCTAssertEqual(info.type.description, e["type"] as? String, name)
            XCTAssertEqual(info.shape, e["shape"] as? [Int], name)
            let w = try f.dequantize(info)
            XCTAssertEqual(w.count, info.elementCount)
            XCTAssertEqual(String(Self.checksum(w)), e["checksum"] as? String, "\(name): checksum of the float32 bits")
            for (k, v) in try XCTUnwrap(e["samples"] as? [String: Double]) {
                XCTAssertEqual(w[Int(k)!], Float(v), "\(name)[\(k)]")
            }
            let row1 = try XCTUnwrap(e["row1_first8"] as? [Double]).map(Float.init)
            let cols = info.dimensions[0]
            let r = min(1, f.rowCount(info) - 1)
            XCTAssertEqual(Array(w[r * cols ..< r * cols + 8]), row1, name)
            let sum = w.reduce(0.0) { $0 + Double($1) }
            let want = try XCTUnwrap(e["sum"] as? Double)
            XCTAssertEqual(sum, want, accuracy: 1e-6 * max(1, abs(want)), "\(name): sum (only the order of addition differs)")
        }
    }

    func testRowRangesMatchWholeTensor() throws {
        let f = try GGUFFile(path: TestPaths.smolLM2)
        for name in ["blk.0.attn_q.weight", "token_embd.weight"] {
            let info = try XCTUnwrap(f.tensor(named: name))
            let cols = info.dimensions[0]
            let whole = try f.dequantize(info)
            for rows in [0 ..< 1, 5 ..< 17, (f.rowCount(info) - 3) ..< f.rowCount(info)] {
                var tile = [Float](repeating: .nan, count: rows.count * cols)
                try tile.withUnsafeMutableBufferPointer { try f.dequantizeRows(info, rows: rows, into: $0.baseAddress!) }
                XCTAssertEqual(tile, Array(whole[rows.lowerBound * cols ..< rows.upperBound * cols]), "\(name) rows \(rows)")
            }
            var one = [Float](repeating: 0, count: cols)
            XCTAssertThrowsError(try one.withUnsafeMutableBufferPointer {
                try f.dequantizeRows(info, rows: f.rowCount(info) ..< f.rowCount(info) + 1, into: $0.baseAddress!)
            }) { XCTAssertTrue("\($0)".contains("out of range"), "\($0)") }
        }
    }

    /// sum(bits[i] * (i % 65521 + 1)) mod 2^64, as tools/make_format_fixtures.py computes it.
    static func checksum(_ a: [Float]) -> UInt64 {
        var s: UInt64 = 0
        for i in 0 ..< a.count { s = s &+ UInt64(a[i].bitPattern) &* UInt64(i % 65521 + 1) }
        return s
    }

    // MARK: - Llama q/k permutation

    /// The whole chain on the real model against transformers' GGUF loader
    /// (`load_gguf_checkpoint`, which dequantizes with gguf-py and applies
    /// `reverse_permute_weights`): bit-exact checksums of q_proj and k_proj.
    func testUnpermutedSmolLM2QKMatchesTransformers() throws {
        let f = try GGUFFile(path: TestPaths.smolLM2)
        let e = try Self.json("smollm2_transformers_qk.json")
        let heads = try XCTUnwrap(f.metadata["llama.attention.head_count"]?.int)
        let kvHeads = try XCTUnwrap(f.metadata["llama.attention.head_count_kv"]?.int)
        XCTAssertEqual(heads, e["num_attention_heads"] as? Int)
        XCTAssertEqual(kvHeads, e["num_key_value_heads"] as? Int)
        for layer in [0, 29] {
            for (name, h) in [("attn_q", heads), ("attn_k", kvHeads)] {
                let key = "blk.\(layer).\(name).weight"
                let want = try XCTUnwrap(e[key] as? [String: Any], key)
                let info = try XCTUnwrap(f.tensor(named: key))
                XCTAssertEqual(info.shape, want["shape"] as? [Int])
                let rows = info.shape[0], cols = info.shape[1]
                var w = try f.dequantize(info)
                let before = Self.checksum(w)
                try w.withUnsafeMutableBufferPointer { try unpermuteLlamaQK($0.baseAddress!, rows: rows, cols: cols, heads: h) }
                XCTAssertNotEqual(Self.checksum(w), before, "\(key): the permutation must move rows")
                XCTAssertEqual(String(Self.checksum(w)), want["checksum"] as? String, key)
                XCTAssertEqual(Array(w[cols ..< cols + 8]), (want["row1_first8"] as? [Double])?.map(Float.init), key)
            }
        }
    }

    func testUnpermuteLlamaQKMatchesNumpy() throws {
        let meta = try Self.json("permute.json")
        let rows = try XCTUnwrap(meta["rows"] as? Int), cols = try XCTUnwrap(meta["cols"] as? Int)
        let heads = try XCTUnwrap(meta["heads"] as? Int)
        let input = try Self.floats("permute_in.f32"), want = try Self.floats("permute_expected.f32")
        XCTAssertEqual(input.count, rows * cols)
        XCTAssertNotEqual(input, want, "the fixture must actually be permuted")
        var w = input
        try w.withUnsafeMutableBufferPointer { try unpermuteLlamaQK($0.baseAddress!, rows: rows, cols: cols, heads: heads) }
        assertBitsEqual(w, want, "unpermute")
        // permute ∘ unpermute is the identity.
        try w.withUnsafeMutableBufferPointer { try permuteLlamaQK($0.baseAddress!, rows: rows, cols: cols, heads: heads) }
        assertBitsEqual(w, input, "permute(unpermute(x))")
        // Rows not divisible into 2 * heads halves: an error, not a trap.
        XCTAssertThrowsError(try w.withUnsafeMutableBufferPointer { try unpermuteLlamaQK($0.baseAddress!, rows: rows, cols: cols, heads: 5) })
    }
}
