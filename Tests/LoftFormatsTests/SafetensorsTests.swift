import Foundation
import XCTest
@testable import LoftFormats

/// safetensors against the reference `safetensors` package (0.8, with torch 2.x
/// for the dtype conversions): fixtures from tools/make_format_fixtures.py.
/// Tolerance: none. Raw bytes and float32 bit patterns must be identical; the
/// one exception is NaN, where only NaN-ness is compared (torch's NaN payloads
/// for FP8 are an implementation detail).
final class SafetensorsTests: XCTestCase {
    static let dir = TestPaths.fixtures.appendingPathComponent("safetensors")

    static func json(_ name: String) throws -> [String: Any] {
        let data = try Data(contentsOf: dir.appendingPathComponent(name))
        return try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    static func hexBytes(_ s: String) -> [UInt8] {
        let a = Array(s.utf8)
        return stride(from: 0, to: a.count, by: 2).map { UInt8(String(decoding: a[$0 ..< $0 + 2], as: UTF8.self), radix: 16)! }
    }

    func assertFloatsMatch(_ got: [Float], bits: [Int], _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(got.count, bits.count, "\(what): count", file: file, line: line)
        var bad = 0
        for (i, b) in bits.enumerated() where i < got.count {
            let want = Float(bitPattern: UInt32(b))
            let same = want.isNaN ? got[i].isNaN : got[i].bitPattern == want.bitPattern
            if !same {
                if bad < 5 { XCTFail("\(what)[\(i)]: got \(got[i]) (0x\(String(got[i].bitPattern, radix: 16))) want \(want) (0x\(String(want.bitPattern, radix: 16)))", file: file, line: line) }
                bad += 1
            }
        }
        XCTAssertEqual(bad, 0, "\(what): \(bad) values differ", file: file, line: line)
    }

    // MARK: - reading

    func testReadsEveryDtypeWrittenByPython() throws {
        let f = try SafetensorsFile(path: Self.dir.appendingPathComponent("all_dtypes.safetensors").path)
        let expected = try Self.json("all_dtypes.json")
        XCTAssertEqual(f.metadata, expected["metadata"] as? [String: String])
        let tensors = try XCTUnwrap(expected["tensors"] as? [String: [String: Any]])
        XCTAssertEqual(Set(f.tensorNames), Set(tensors.keys))
        // Every dtype Loft knows appears in the fixture.
        XCTAssertEqual(Set(f.tensors.map(\.dtype)), Set(SafetensorsDType.allCases))
        for (name, e) in tensors {
            let t = try XCTUnwrap(f.tensor(named: name), name)
            XCTAssertEqual(t.dtype.rawValue, e["dtype"] as? String, name)
            XCTAssertEqual(t.shape, e["shape"] as? [Int], name)
            XCTAssertEqual(Array(t.bytes), Self.hexBytes(try XCTUnwrap(e["hex"] as? String)), "\(name): raw bytes")
            assertFloatsMatch(try f.floats(named: name), bits: try XCTUnwrap(e["f32_bits"] as? [Int]), name)
        }
        // Tile by tile gives the same values.
        let t = try XCTUnwrap(f.tensor(named: "f8_e4m3"))
        var tile = [Float](repeating: 0, count: 100)
        try tile.withUnsafeMutableBufferPointer { try t.floats(100 ..< 200, into: $0.baseAddress!) }
        XCTAssertEqual(tile.map(\.bitPattern), Array(t.floats()[100 ..< 200]).map(\.bitPattern))
        XCTAssertThrowsError(try tile.withUnsafeMutableBufferPointer { try t.floats(200 ..< 300, into: $0.baseAddress!) })
        XCTAssertNil(f.tensor(named: "nope"))
        XCTAssertThrowsError(try f.floats(named: "nope")) { XCTAssertTrue("\($0)".contains("no tensor named nope"), "\($0)") }
    }

    func testShardedCheckpoint() throws {
        let ck = try SafetensorsCheckpoint(path: Self.dir.appendingPathComponent("sharded").path)
        let expected = try Self.json("sharded.json") as? [String: [String: Any]]
        let e = try XCTUnwrap(expected)
        XCTAssertEqual(ck.shards.count, 2)
        XCTAssertEqual(ck.tensorNames, e.keys.sorted())
        XCTAssertEqual(ck.indexMetadata["total_size"]?.int, 4 * 12 + 2 * 9 + 2 * 9 + 4 * 12)
        XCTAssertEqual(ck.metadata["format"], "pt")
        for (name, v) in e {
            XCTAssertEqual(ck.info(named: name)?.shape, v["shape"] as? [Int], name)
            assertFloatsMatch(try ck.floats(named: name), bits: try XCTUnwrap(v["f32_bits"] as? [Int]), name)
        }
        XCTAssertTrue(ck.shard(for: "lm_head.weight")!.path.hasSuffix("model-00002-of-00002.safetensors"))
        XCTAssertTrue(ck.shard(for: "model.embed.weight")!.path.hasSuffix("model-00001-of-00002.safetensors"))
        // Opening one file as a checkpoint works too.
        let single = try SafetensorsCheckpoint(path: Self.dir.appendingPathComponent("all_dtypes.safetensors").path)
        XCTAssertEqual(single.tensorNames.count, 18)
    }

    func testShardedCheckpointErrors() throws {
        let tmp = try TempDir()
        let src = Self.dir.appendingPathComponent("sharded")
        for f in ["model-00001-of-00002.safetensors", "model.safetensors.index.json"] {
            try FileManager.default.copyItem(at: src.appendingPathComponent(f), to: tmp.url.appendingPathComponent(f))
        }
        XCTAssertThrowsError(try SafetensorsCheckpoint(path: tmp.path)) {
            XCTAssertTrue("\($0)".contains("model-00002-of-00002.safetensors") && "\($0)".contains("missing"), "\($0)")
        }
        // An index naming a tensor its shard lacks.
        let index = #"{"metadata":{},"weight_map":{"ghost":"model-00001-of-00002.safetensors"}}"#
        try index.write(to: tmp.url.appendingPathComponent("model.safetensors.index.json"), atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try SafetensorsCheckpoint(path: tmp.path)) {
            XCTAssertTrue("\($0)".contains("ghost") && "\($0)".contains("no such tensor"), "\($0)")
        }
        try "{\"weight_map\": [".write(to: tmp.url.appendingPathComponent("model.safetensors.index.json"), atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try SafetensorsCheckpoint(path: tmp.path)) { XCTAssertTrue("\($0)".contains("malformed JSON"), "\($0)") }
        XCTAssertThrowsError(try SafetensorsCheckpoint(path: tmp.path + "/nowhere")) { XCTAssertTrue("\($0)".contains("not found"), "\($0)") }
    }

    // MARK: - writing

    /// The tensors of writer_case.safetensors, rebuilt from the formulas in the
    /// fixture script: value(i) = (i - 3) * 0.25 for floats, i - 3 for ints.
    static func writerCase(metadata: [String: String]?) throws -> SafetensorsWriter {
        func v(_ n: Int) -> [Double] { (0 ..< n).map { Double($0) - 3 } }
        func le<T: FixedWidthInteger>(_ xs: [T]) -> [UInt8] { xs.flatMap { x in withUnsafeBytes(of: x.littleEndian) { Array($0) } } }
        var w = SafetensorsWriter(metadata: metadata)
        try w.add(name: "w.f32", shape: [2, 3], floats: v(6).map { Float($0 * 0.25) })
        try w.add(name: "b.f16", dtype: .f16, shape: [5], bytes: le(v(5).map { Float16($0 * 0.25).bitPattern }))
        try w.add(name: "a.i64", dtype: .i64, shape: [2, 2], bytes: le(v(4).map { Int64($0) }))
        try w.add(name: "c.i8", dtype: .i8, shape: [3], bytes: le(v(3).map { Int8($0) }))
        try w.add(name: "d.u8", dtype: .u8, shape: [7], bytes: (0 ..< 7).map { UInt8($0) })
        try w.add(name: "e.bool", dtype: .bool, shape: [5], bytes: (0 ..< 5).map { $0 % 3 == 0 ? 1 : 0 })
        try w.add(name: "f.f64", dtype: .f64, shape: [2], bytes: le(v(2).map { ($0 * 0.25).bitPattern }))
        try w.add(name: "g.i32", dtype: .i32, shape: [1, 3, 1], bytes: le(v(3).map { Int32($0) }))
        try w.add(name: "h.i16", dtype: .i16, shape: [2], bytes: le(v(2).map { Int16($0) }))
        try w.add(name: "scalar.f32", shape: [], floats: [1.5])
        try w.add(name: "zero.f32", shape: [0], floats: [])
        try w.add(name: "Z\"quote\\é", shape: [1], floats: [7])
        return w
    }

    func testWriterIsByteIdenticalToPython() throws {
        for (file, meta) in [("writer_case.safetensors", ["format": "pt"]), ("writer_case_nometa.safetensors", nil),
                             ("writer_case_emptymeta.safetensors", [:])] as [(String, [String: String]?)] {
            let python = try Data(contentsOf: Self.dir.appendingPathComponent(file))
            let w = try Self.writerCase(metadata: meta)
            let ours = w.serialized()
            XCTAssertEqual(ours.count, python.count, file)
            if ours != [UInt8](python) {
                let h = w.header()
                XCTFail("\(file): differs; our header: \(String(decoding: h[8...], as: UTF8.self))")
            }
            // And through the file path, atomically.
            let tmp = try TempDir()
            let out = tmp.url.appendingPathComponent("out.safetensors").path
            try w.write(to: out)
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: out)), python, file)
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: tmp.path), ["out.safetensors"], "no temp file left behind")
        }
    }

    /// Every dtype, a scalar and an empty tensor: our tensor order, offsets and
    /// header padding against python's file for the same tensors.
    func testWriterOrdersEveryDtypeLikePython() throws {
        let src = try SafetensorsFile(path: Self.dir.appendingPathComponent("all_dtypes.safetensors").path)
        var w = SafetensorsWriter()
        for t in src.tensors.reversed() { try w.add(name: t.name, dtype: t.dtype, shape: t.shape, bytes: src.tensor(named: t.name)!.bytes) }
        let python = [UInt8](try Data(contentsOf: Self.dir.appendingPathComponent("all_dtypes_nometa.safetensors")))
        let ours = w.serialized()
        XCTAssertEqual(ours.count, python.count)
        if ours != python {
            XCTFail("differs from python; ours: \(String(decoding: w.header()[8...], as: UTF8.self))")
        }
    }

    func testReadsBackItsOwnOutput() throws {
        let src = try SafetensorsFile(path: Self.dir.appendingPathComponent("all_dtypes.safetensors").path)
        var w = SafetensorsWriter(metadata: src.metadata)
        for t in src.tensors { try w.add(name: t.name, dtype: t.dtype, shape: t.shape, bytes: src.tensor(named: t.name)!.bytes) }
        let tmp = try TempDir()
        let out = tmp.url.appendingPathComponent("copy.safetensors").path
        try w.write(to: out)
        let back = try SafetensorsFile(path: out)
        XCTAssertEqual(back.metadata, src.metadata)
        XCTAssertEqual(back.tensors.map(\.name).sorted(), src.tensors.map(\.name).sorted())
        for t in src.tensors {
            let a = try XCTUnwrap(back.tensor(named: t.name)), b = src.tensor(named: t.name)!
            XCTAssertEqual(a.dtype, b.dtype)
            XCTAssertEqual(a.shape, b.shape)
            XCTAssertEqual(Array(a.bytes), Array(b.bytes), t.name)
        }
        // Both metadata keys were written by python in an arbitrary (hash) order;
        // with those keys ours is sorted, and that is the only difference.
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: out)).count,
                       try Data(contentsOf: Self.dir.appendingPathComponent("all_dtypes.safetensors")).count)
        // Overwriting an existing file replaces it.
        var w2 = SafetensorsWriter()
        try w2.add(name: "x", shape: [1], floats: [1])
        try w2.write(to: out)
        XCTAssertEqual(try SafetensorsFile(path: out).tensorNames, ["x"])
    }

    func testWriterRejectsBadEntries() throws {
        var w = SafetensorsWriter()
        XCTAssertThrowsError(try w.add(name: "a", dtype: .f32, shape: [3], bytes: [0, 0, 0, 0])) { XCTAssertTrue("\($0)".contains("needs 12 bytes"), "\($0)") }
        XCTAssertThrowsError(try w.add(name: "__metadata__", shape: [1], floats: [0]))
        try w.add(name: "a", shape: [1], floats: [0])
        XCTAssertThrowsError(try w.add(name: "a", shape: [1], floats: [0])) { XCTAssertTrue("\($0)".contains("already"), "\($0)") }
        XCTAssertThrowsError(try w.add(name: "n", dtype: .u8, shape: [-1], bytes: []))
        XCTAssertThrowsError(try w.write(to: "/nonexistent-dir/x.safetensors")) { XCTAssertTrue("\($0)".contains("cannot create"), "\($0)") }
    }
}

/// A temporary directory removed when the value is released.
final class TempDir {
    let url: URL
    var path: String { url.path }
    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("loft-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    func file(_ name: String, _ bytes: [UInt8]) throws -> String {
        let p = url.appendingPathComponent(name).path
        try Data(bytes).write(to: URL(fileURLWithPath: p))
        return p
    }
    deinit { try? FileManager.default.removeItem(at: url) }
}
