import Foundation
import XCTest
import LoftTestSupport
@testable import LoftFormats

/// Bad files give a FormatError that names the problem, never a crash.
final class FormatErrorTests: XCTestCase {
    static let st = TestPaths.fixtures.appendingPathComponent("safetensors/all_dtypes.safetensors")
    static let gguf = TestPaths.fixtures.appendingPathComponent("gguf/small.gguf")

    /// Runs `body`, expects a FormatError whose text contains every one of `words`.
    func expectError(_ words: [String], _ what: String, file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> Void) {
        do {
            try body()
            XCTFail("\(what): no error", file: file, line: line)
        } catch let e as FormatError {
            for w in words where !e.description.contains(w) {
                XCTFail("\(what): error does not mention \"\(w)\": \(e)", file: file, line: line)
            }
        } catch {
            XCTFail("\(what): not a FormatError: \(error)", file: file, line: line)
        }
    }

    /// A safetensors file from a header string and data bytes.
    static func stBytes(_ header: String, _ data: [UInt8], length: UInt64? = nil) -> [UInt8] {
        let h = Array(header.utf8)
        return withUnsafeBytes(of: (length ?? UInt64(h.count)).littleEndian) { Array($0) } + h + data
    }

    // MARK: - safetensors

    func testSafetensorsMissingAndTruncated() throws {
        let tmp = try TempDir()
        expectError(["not found"], "missing") { _ = try SafetensorsFile(path: tmp.path + "/missing.safetensors") }
        expectError(["directory"], "a directory") { _ = try SafetensorsFile(path: tmp.path) }
        let full = [UInt8](try Data(contentsOf: Self.st))
        let headerEnd = 8 + Int(full.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        let cuts: [(Int, String)] = [
            (0, "truncated"), (5, "truncated"), (8, "larger than the file"), (headerEnd / 2, "larger than the file"),
            (headerEnd - 1, "larger than the file"), (headerEnd, "truncated"), (headerEnd + 7, "truncated"),
            ((headerEnd + full.count) / 2, "truncated"), (full.count - 1, "truncated"),
        ]
        for (cut, word) in cuts {
            let p = try tmp.file("cut\(cut).safetensors", Array(full[..<cut]))
            expectError([word, p], "cut at \(cut) of \(full.count)") { _ = try SafetensorsFile(path: p) }
        }
    }

    func testSafetensorsHeaderDisagreesWithData() throws {
        let tmp = try TempDir()
        let cases: [(String, [UInt8], [String])] = [
            (#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, [0, 0, 0, 0], ["a", "past the end", "truncated"]),
            (#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
             Array(repeating: 0, count: 12), ["b", "overlap"]),
            (#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}}"#, [0, 0, 0, 0], ["a", "data_offsets", "negative"]),
            (#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}"#, [0, 0, 0, 0], ["a", "end before begin"]),
            (#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, Array(repeating: 0, count: 8), ["a", "needs 12 bytes", "span 8"]),
            (#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#,
             Array(repeating: 0, count: 12), ["b", "gap"]),
            (#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, Array(repeating: 0, count: 6), ["cover only 4"]),
            (#"{"a":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}}"#, Array(repeating: 0, count: 16), ["a", "unknown dtype", "F128", "BF16"]),
            (#"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#, [0, 0, 0, 0], ["a", "shape", "non-negative"]),
            (#"{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}"#, [0, 0, 0, 0], ["a", "shape"]),
            (#"{"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,4]}}"#, [0, 0, 0, 0], ["a", "too large"]),
            (#"{"a":{"dtype":"F32","shape":[1]}}"#, [0, 0, 0, 0], ["a", "data_offsets"]),
            (#"{"a":{"shape":[1],"data_offsets":[0,4]}}"#, [0, 0, 0, 0], ["a", "dtype"]),
            (#"{"a":[1,2]}"#, [], ["a", "expected an object"]),
            (#"{"__metadata__":{"k":1}}"#, [], ["__metadata__", "must be strings"]),
            (#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
             [0, 0, 0, 0], ["malformed header JSON", "duplicate key"]),
            (#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]"#, [0, 0, 0, 0], ["malformed header JSON", "end of JSON"]),
            (#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}} x"#, [0, 0, 0, 0], ["malformed header JSON", "after the end"]),
            ("{\"a\u{01}\":{}}", [], ["malformed header JSON", "control character"]),
            (#"[1,2]"#, [], ["does not start with '{'"]),
            (#"{"#, [], ["malformed header JSON"]),
        ]
        for (i, (header, data, words)) in cases.enumerated() {
            let p = try tmp.file("case\(i).safetensors", Self.stBytes(header, data))
            expectError(words, "case \(i): \(header)") { _ = try SafetensorsFile(path: p) }
        }
        // Header length larger than the file, and absurdly large.
        let p1 = try tmp.file("biglen.safetensors", Self.stBytes("{}", [], length: 1000))
        expectError(["header length 1000", "larger than the file"], "header length") { _ = try SafetensorsFile(path: p1) }
        let p2 = try tmp.file("hugelen.safetensors", Self.stBytes("{}", [], length: .max))
        expectError(["larger than the file"], "huge header length") { _ = try SafetensorsFile(path: p2) }
        // Invalid UTF-8 in the header.
        let p3 = try tmp.file("utf8.safetensors", withUnsafeBytes(of: UInt64(6).littleEndian) { Array($0) } + [0x7B, 0x22, 0xFF, 0x22, 0x3A, 0x7D])
        expectError(["malformed header JSON"], "invalid UTF-8") { _ = try SafetensorsFile(path: p3) }
        // Valid edge cases: no tensors at all, padding spaces after the JSON.
        let p4 = try tmp.file("empty.safetensors", Self.stBytes("{}      ", []))
        XCTAssertEqual(try SafetensorsFile(path: p4).tensors.count, 0)
    }

    // MARK: - GGUF

    /// A little GGUF v3 file; `patch` edits fields before encoding.
    struct GGUFBuilder {
        var magic: [UInt8] = Array("GGUF".utf8)
        var version: UInt32 = 3
        var tensorCount: UInt64? = nil
        var kv: [(String, UInt32, [UInt8])] = [("general.architecture", 8, GGUFBuilder.str("llama"))]
        var tensors: [(name: String, dims: [UInt64], type: UInt32, offset: UInt64)] = []
        var data: [UInt8] = []
        var cut: Int? = nil

        static func u32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
        static func u64(_ v: UInt64) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
        static func str(_ s: String) -> [UInt8] { u64(UInt64(s.utf8.count)) + Array(s.utf8) }

        func bytes() -> [UInt8] {
            var b = magic + Self.u32(version) + Self.u64(tensorCount ?? UInt64(tensors.count)) + Self.u64(UInt64(kv.count))
            for (k, t, v) in kv { b += Self.str(k) + Self.u32(t) + v }
            for t in tensors {
                b += Self.str(t.name) + Self.u32(UInt32(t.dims.count))
                for d in t.dims { b += Self.u64(d) }
                b += Self.u32(t.type) + Self.u64(t.offset)
            }
            while b.count % 32 != 0 { b.append(0) }
            b += data
            if let cut { b = Array(b.prefix(cut)) }
            return b
        }
    }

    func testGGUFBuilderSanity() throws {
        // The builder makes files the reader accepts, so the error cases below
        // fail for the reason each one is about.
        let tmp = try TempDir()
        var g = GGUFBuilder()
        g.tensors = [("w", [32, 2], 8, 0)]  // Q8_0, 2 rows of one block
        g.data = Array(repeating: 0, count: 68)
        let f = try GGUFFile(path: try tmp.file("ok.gguf", g.bytes()))
        XCTAssertEqual(try f.dequantize(f.tensor(named: "w")!), [Float](repeating: 0, count: 64))
    }

    func testGGUFErrors() throws {
        let tmp = try TempDir()
        expectError(["not found"], "missing") { _ = try GGUFFile(path: tmp.path + "/missing.gguf") }
        var base = GGUFBuilder()
        base.tensors = [("w", [32, 2], 8, 0)]
        base.data = Array(repeating: 0, count: 68)
        var cases: [(GGUFBuilder, [String])] = []
        var g = base; g.magic = Array("GGML".utf8); cases.append((g, ["not a GGUF file"]))
        g = base; g.version = 1; cases.append((g, ["version 1"]))
        g = base; g.tensors[0].type = 99; cases.append((g, ["w", "unknown ggml type 99"]))
        g = base; g.tensors[0].offset = 1 << 40; cases.append((g, ["w", "past the end"]))
        g = base; g.tensors[0].dims = [32, 3]; cases.append((g, ["w", "runs past the end", "truncated"]))
        g = base; g.tensors[0].dims = [48, 2]; cases.append((g, ["w", "not a multiple"]))
        g = base; g.tensors[0].dims = [32, 0]; cases.append((g, ["w", "dimension 0"]))
        g = base; g.tensors[0].dims = [1 << 39, 1 << 39, 1 << 39, 1 << 39]; cases.append((g, ["w", "too large"]))
        g = base; g.tensors[0].dims = [32, 1, 1, 1, 1]; cases.append((g, ["w", "rank 5"]))
        g = base; g.tensorCount = 1 << 40; cases.append((g, ["more than the file can hold"]))
        g = base; g.kv.append(("x", 8, GGUFBuilder.u64(1 << 50))); cases.append((g, ["x", "claims"]))
        g = base; g.kv.append(("x", 77, [])); cases.append((g, ["x", "unknown value type 77"]))
        g = base; g.kv.append(("x", 9, GGUFBuilder.u32(4) + GGUFBuilder.u64(1 << 50))); cases.append((g, ["x", "claims"]))
        g = base; g.kv.append(("general.alignment", 4, GGUFBuilder.u32(24))); cases.append((g, ["alignment", "power of two"]))
        for cut in [3, 10, 23, 40, 60, 100] {
            g = base; g.cut = cut; cases.append((g, ["truncated"]))
        }
        for (i, (b, words)) in cases.enumerated() {
            let p = try tmp.file("case\(i).gguf", b.bytes())
            expectError(words + [p], "GGUF case \(i) \(words)") { _ = try GGUFFile(path: p) }
        }
        // A tensor of a type Loft cannot dequantize: the file opens, dequantizing throws.
        g = base; g.tensors[0] = ("iq", [256, 1], 16, 0); g.data = Array(repeating: 0, count: 66)
        let p = try tmp.file("iq.gguf", g.bytes())
        let f = try GGUFFile(path: p)
        expectError(["iq", "IQ2_XXS", "Q4_K", p], "unsupported type") { _ = try f.dequantize(f.tensor(named: "iq")!) }
    }

    func testSmallGGUFFromGGUFPyDequantizes() throws {
        let f = try GGUFFile(path: Self.gguf.path)
        let data = try Data(contentsOf: TestPaths.fixtures.appendingPathComponent("gguf/small.json"))
        let expected = try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: [String: Any]])
        XCTAssertEqual(expected.count, 6)
        XCTAssertEqual(f.metadata["general.name"]?.string, "loft-fixture")
        for (name, e) in expected {
            let info = try XCTUnwrap(f.tensor(named: name), name)
            XCTAssertEqual(info.type.description, e["type"] as? String)
            XCTAssertEqual(info.shape, e["shape"] as? [Int])
            let got = try f.dequantize(info).map { Int($0.bitPattern) }
            XCTAssertEqual(got, e["f32_bits"] as? [Int], name)
        }
        let full = [UInt8](try Data(contentsOf: Self.gguf))
        let tmp = try TempDir()
        // Cut inside the header, the metadata, the tensor directory and the data
        // (gguf-py pads after the last tensor, so cut before its end).
        let dataEnd = f.tensors.map { $0.offset + $0.byteCount }.max()!
        XCTAssertLessThanOrEqual(dataEnd, full.count)
        for cut in [0, 2, 6, 20, 60, 200, 400, dataEnd - 600, dataEnd - 1] {
            let p = try tmp.file("cut\(cut).gguf", Array(full[..<cut]))
            expectError([p], "cut at \(cut)") { _ = try GGUFFile(path: p) }
        }
    }

    // MARK: - fuzz

    /// Random bytes and randomly damaged copies of the fixtures: opening and
    /// reading every tensor may throw, but must never trap. Seeded, so a failure
    /// reproduces.
    func testFuzzNeverTraps() throws {
        var rng = SeededRandom(seed: 0x10F7)
        let tmp = try TempDir()
        let seeds: [(String, [UInt8])] = try [
            ("st", [UInt8](Data(contentsOf: Self.st))),
            ("st", [UInt8](Data(contentsOf: TestPaths.fixtures.appendingPathComponent("safetensors/writer_case.safetensors")))),
            ("gguf", [UInt8](Data(contentsOf: Self.gguf))),
        ]
        var opened = 0, failed = 0
        for iteration in 0 ..< 600 {
            var kind: String
            var bytes: [UInt8]
            switch iteration % 4 {
            case 0:  // pure noise, sometimes behind a valid prefix
                kind = rng.next() % 2 == 0 ? "st" : "gguf"
                bytes = (0 ..< Int(rng.next() % 300)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                if kind == "gguf" { bytes = Array("GGUF".utf8) + [3, 0, 0, 0] + bytes }
                else if rng.next() % 2 == 0 { bytes = GGUFBuilder.u64(UInt64(rng.next() % 64)) + [0x7B] + bytes }
            default:  // flip, overwrite, cut or splice a fixture
                let s = seeds[Int(rng.next() % UInt64(seeds.count))]
                kind = s.0
                bytes = s.1
                for _ in 0 ..< 1 + Int(rng.next() % 6) {
                    guard !bytes.isEmpty else { break }
                    let at = Int(rng.next() % UInt64(bytes.count))
                    switch rng.next() % 5 {
                    case 0: bytes[at] ^= UInt8(1 << (rng.next() % 8))
                    case 1: bytes[at] = UInt8(truncatingIfNeeded: rng.next())
                    case 2: bytes = Array(bytes[..<at])
                    case 3: bytes.insert(contentsOf: (0 ..< Int(rng.next() % 9)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }, at: at)
                    default:  // damage the header region, where the structure is
                        let h = Int(rng.next() % UInt64(min(bytes.count, 600)))
                        bytes[h] = [0x00, 0xFF, 0x22, 0x7B, 0x7D, 0x5B, 0x5D, 0x2C, 0x3A, 0x30, 0x39, 0x2D][Int(rng.next() % 12)]
                    }
                }
            }
            let p = try tmp.file("fuzz.\(kind)", bytes)
            do {
                if kind == "st" {
                    let f = try SafetensorsFile(path: p)
                    for t in f.tensors { _ = try f.floats(named: t.name) }
                } else {
                    let f = try GGUFFile(path: p)
                    for t in f.tensors where GGMLDequantizer.isSupported(t.type) { _ = try f.dequantize(t) }
                }
                opened += 1
            } catch is FormatError {
                failed += 1
            } catch {
                XCTFail("iteration \(iteration): not a FormatError: \(error)")
            }
        }
        XCTAssertEqual(opened + failed, 600)
        XCTAssertGreaterThan(failed, 100, "the corruption must actually break files")
        XCTAssertGreaterThan(opened, 10, "some damaged files (e.g. flipped data bytes) still open")
    }
}

