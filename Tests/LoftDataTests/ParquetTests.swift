import Foundation
import LoftFormats
import LoftTemplates
import XCTest
@testable import LoftData

/// The Parquet reader against files written by pyarrow (tools/make_parquet_fixtures.py):
/// every compression and encoding, nulls and nesting, several row groups, the
/// shared datasets converted, and corrupt files that must fail with the file
/// and column named, never crash.
final class ParquetTests: XCTestCase {
    func fixture(_ name: String) -> String { TestPaths.fixtures.appendingPathComponent(name).path }

    func rows(_ path: String, limit: Int = .max) throws -> [RawRow] {
        let r = try RowReader(path: path)
        var out: [RawRow] = []
        while out.count < limit, let x = try r.next() { out.append(try x.get()) }
        return out
    }

    /// Null-valued keys dropped (a JSONL row without a key and its Parquet twin,
    /// where pyarrow stores null, read the same); numbers compared as numbers.
    func normalized(_ v: JinjaValue) -> JinjaValue {
        switch v {
        case .object(let o):
            return .object(JinjaObject(o.pairs.filter { $0.1 != .null }.map { ($0.0, normalized($0.1)) }))
        case .array(let a): return .array(a.map(normalized))
        case .int(let i): return .double(Double(i))
        default: return v
        }
    }

    func builder() throws -> DatasetBuilder {
        try DatasetBuilder(tokenizer: Shared.tokenizer, options: DataOptions(sequenceLen: 4096))
    }

    func testEveryCompressionAndEncodingReadsLikeTheJSONL() throws {
        let reference = try rows(fixture("formats/alpaca.jsonl")).map(\.value)
        let built = try builder().build([DatasetSpec(path: fixture("formats/alpaca.jsonl"))])
        for name in ["none", "snappy", "gzip", "zstd", "plain", "v2", "groups"] {
            let path = fixture("parquet/alpaca_\(name).parquet")
            XCTAssertEqual(try rows(path).map(\.value), reference, name)
            XCTAssertEqual(try rows(path).map(\.row), [1, 2, 3], name)
            let p = try builder().build([DatasetSpec(path: path)])
            XCTAssertEqual(p.train, built.train, name)
            XCTAssertEqual(p.hash, built.hash, name)
        }
        XCTAssertEqual(try ParquetFile(path: fixture("parquet/alpaca_groups.parquet")).rowGroupCount, 3)
    }

    func testTypesNullsAndNestedLists() throws {
        let expected = try rows(fixture("parquet/types.jsonl")).map(\.value)
        for name in ["types.parquet", "types_v2_plain.parquet"] {
            let got = try rows(fixture("parquet/" + name)).map(\.value)
            XCTAssertEqual(got.count, 4, name)
            for (i, (g, e)) in zip(got, expected).enumerated() {
                XCTAssertEqual(normalized(g), normalized(e), "\(name) row \(i + 1)")
            }
            // Top-level nulls stay (the columns), and ints stay ints.
            XCTAssertEqual(got[1]["i"], .null)
            XCTAssertEqual(got[3]["i"], .int(1 << 40))
            XCTAssertEqual(got[2]["ll"], .array([.array([]), .array([.int(4), .null])]))
            XCTAssertEqual(got[3]["m"], .object(JinjaObject([("two", .int(2)), ("three", .null)])))
        }
    }

    /// The bar: conversations written by pyarrow (snappy, dictionary-encoded,
    /// several row groups) train exactly like their JSONL twin.
    func testConversationsTrainExactlyLikeTheirJSONLTwin() throws {
        let b = try builder()
        let jsonl = try b.build([DatasetSpec(path: fixture("parquet/conversations.jsonl"))])
        let parquet = try b.build([DatasetSpec(path: fixture("parquet/conversations.parquet"))])
        XCTAssertEqual(parquet.stats[0].format, "messages")
        XCTAssertEqual(parquet.train.count, 15)
        XCTAssertEqual(parquet.train, jsonl.train)
        XCTAssertEqual(parquet.hash, jsonl.hash)
        XCTAssertEqual(parquet.trainOrigins.map(\.row), Array(1...15))
        XCTAssertGreaterThan(try ParquetFile(path: fixture("parquet/conversations.parquet")).rowGroupCount, 1)
    }

    /// The shared real datasets, converted by pyarrow: same rows, same examples.
    func testSharedDatasetsConvertedReadTheSame() throws {
        let b = try builder()
        for name in ["identity.json", "alpaca_en_demo.json", "v1_sft_demo.jsonl", "glaive_toolcall_en_demo.json",
                     "dpo_en_demo.json", "v1_dpo_demo.jsonl", "kto_en_demo.json", "c4_demo.jsonl"] {
            let stem = (name as NSString).deletingPathExtension
            let pq = fixture("parquet/shared_\(stem).parquet")
            let original = try rows(Shared.dataset(name), limit: 40)
            let converted = try rows(pq)
            XCTAssertEqual(converted.count, original.count, name)
            for (c, o) in zip(converted, original) {
                XCTAssertEqual(normalized(c.value), normalized(o.value), "\(name) row \(o.row)")
            }
            XCTAssertEqual(try DatasetBuilder.scan(DatasetSpec(path: pq)).format,
                           try DatasetBuilder.scan(DatasetSpec(path: Shared.dataset(name)), maxRows: 40).format, name)
            if ["dpo_en_demo.json", "v1_dpo_demo.jsonl", "kto_en_demo.json"].contains(name) { continue }
            var o = DataOptions(sequenceLen: 4096)
            o.maxRows = 40
            let reference = try DatasetBuilder(tokenizer: Shared.tokenizer, options: o).build([DatasetSpec(path: Shared.dataset(name))])
            let got = try b.build([DatasetSpec(path: pq)])
            XCTAssertEqual(got.train, reference.train, name)
        }
    }

    // MARK: Corrupt files

    func temp(_ name: String, _ bytes: [UInt8]) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("loft-parquet-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let p = dir.appendingPathComponent(name).path
        try Data(bytes).write(to: URL(fileURLWithPath: p))
        return p
    }

    /// Reads every row; the error text when it fails.
    func failure(_ path: String) -> String? {
        do {
            _ = try rows(path)
            return nil
        } catch {
            XCTAssertTrue(error is DataError, "not a DataError: \(error)")
            return "\(error)"
        }
    }

    func testCorruptFilesNameTheFileAndColumn() throws {
        let good = [UInt8](try Data(contentsOf: URL(fileURLWithPath: fixture("parquet/alpaca_none.parquet"))))
        // Bad magic.
        var bad = good
        bad[0] = UInt8(ascii: "X")
        let magic = failure(try temp("magic.parquet", bad)) ?? ""
        XCTAssertTrue(magic.contains("magic.parquet") && magic.contains("does not start with the Parquet magic"), magic)
        // Truncated: the end magic is gone.
        let cut = failure(try temp("cut.parquet", Array(good.prefix(good.count - 3)))) ?? ""
        XCTAssertTrue(cut.contains("cut.parquet") && cut.contains("truncated"), cut)
        // A footer length past the start of the file.
        bad = good
        bad[bad.count - 6] = 0x7f
        let footer = failure(try temp("footer.parquet", bad)) ?? ""
        XCTAssertTrue(footer.contains("footer.parquet") && footer.contains("footer length"), footer)

        // The first column chunk's first page (uncompressed, so the header's sizes are checked exactly).
        let file = try ParquetFile(path: fixture("parquet/alpaca_none.parquet"))
        let chunk = file.metadata.rowGroups[0].columns[0]
        let start = Int(chunk.start)
        // A page header that lies: its compressed size (field 3, after type and uncompressed size) grows.
        bad = good
        var t = ThriftCompactReader(good, from: start)
        _ = try t.byte(); _ = try t.zigzag()   // field 1: type
        _ = try t.byte(); _ = try t.zigzag()   // field 2: uncompressed size
        XCTAssertEqual(try t.byte(), 0x15)     // field 3: compressed size, an i32
        bad[t.position] = 0x7e  // zigzag 63: more bytes than the page holds
        let lying = failure(try temp("lying.parquet", bad)) ?? ""
        XCTAssertTrue(lying.contains("lying.parquet") && lying.contains("field `instruction`"), lying)
        // A dictionary index out of range: the dictionary page says it holds one value.
        XCTAssertNotNil(chunk.dictionaryPageOffset)
        bad = good
        var h = ThriftCompactReader(good, from: start)
        _ = try h.byte(); XCTAssertEqual(try h.zigzag(), 2)  // a dictionary page
        _ = try h.byte(); _ = try h.zigzag()
        _ = try h.byte(); _ = try h.zigzag()
        XCTAssertEqual(try h.byte(), 0x4c)  // field 7: the dictionary page header
        XCTAssertEqual(try h.byte(), 0x15)  // its field 1: num_values
        XCTAssertEqual(good[h.position], 6)  // three distinct instructions
        bad[h.position] = 2
        let index = failure(try temp("dict.parquet", bad)) ?? ""
        XCTAssertTrue(index.contains("dict.parquet") && index.contains("field `instruction`") && index.contains("dictionary index 1 is out of range"), index)
    }

    /// Seeded fuzzing like the other readers': flipped bytes, truncation, junk.
    /// Every failure is a DataError naming the file; nothing crashes or hangs.
    func testFuzzedParquetNeverCrashes() throws {
        var rng = SplitMix64(seed: 20261202)
        let sources = try ["alpaca_snappy", "alpaca_gzip", "alpaca_zstd", "alpaca_v2", "types", "conversations", "alpaca_groups"]
            .map { [UInt8](try Data(contentsOf: URL(fileURLWithPath: fixture("parquet/\($0).parquet")))) }
        var outcomes = [0, 0]
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("loft-parquet-fuzz-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        for i in 0..<400 {
            var bytes = sources[Int(rng.next() % UInt64(sources.count))]
            switch i % 4 {
            case 0:  // flips anywhere
                for _ in 0..<(1 + Int(rng.next() % 4)) { bytes[Int(rng.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: rng.next()) }
            case 1:  // flips in the footer (the metadata)
                let footer = Int(bytes[bytes.count - 8]) | Int(bytes[bytes.count - 7]) << 8
                for _ in 0..<(1 + Int(rng.next() % 3)) {
                    bytes[bytes.count - 8 - 1 - Int(rng.next() % UInt64(footer))] = UInt8(truncatingIfNeeded: rng.next())
                }
            case 2:  // flips in the pages (headers and data)
                let pages = max(1, bytes.count / 2)
                for _ in 0..<(1 + Int(rng.next() % 3)) { bytes[4 + Int(rng.next() % UInt64(pages))] = UInt8(truncatingIfNeeded: rng.next()) }
            default:  // truncated, with the magic put back
                let keep = 8 + Int(rng.next() % UInt64(bytes.count - 8))
                bytes = Array(bytes.prefix(keep)) + Array(bytes.suffix(8))
            }
            let p = dir.appendingPathComponent("case\(i).parquet").path
            try Data(bytes).write(to: URL(fileURLWithPath: p))
            do {
                _ = try rows(p)
                outcomes[0] += 1
            } catch let e as DataError {
                XCTAssertTrue(e.description.contains("case\(i).parquet"), "error does not name the file: \(e)")
                outcomes[1] += 1
            } catch {
                XCTFail("case \(i): not a DataError: \(error)")
            }
        }
        XCTAssertGreaterThan(outcomes[1], 100, "most corruptions should be caught")
    }
}
