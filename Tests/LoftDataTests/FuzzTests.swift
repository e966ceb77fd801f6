import Foundation
import LoftFormats
import XCTest
@testable import LoftData

/// Seeded fuzzing of the readers and converters: random bytes, truncated JSON,
/// wrong types, huge fields, invalid UTF-8, deep nesting. Nothing may crash, and
/// every failure must be a `DataError` (which names file, row and fix).
final class FuzzTests: XCTestCase {
    func testReadersNeverCrash() throws {
        var rng = SplitMix64(seed: 20261122)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("loftdata-fuzz-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let seeds: [[UInt8]] = try ["formats/alpaca.jsonl", "formats/alpaca.json", "formats/alpaca.csv", "bad_rows.jsonl", "segments.jsonl"]
            .map { Array(try Data(contentsOf: TestPaths.fixtures.appendingPathComponent($0))) }
            + [Array(#"{"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}, {"role": "assistant", "content": "yo", "loss_weight": 1}]}"#.utf8),
               Array(#"{"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}], "tools": "[{\"name\": \"f\"}]"}"#.utf8)]
        let junkValues = [#"null"#, #"5"#, #"-1e309"#, #"true"#, #"[]"#, #"{}"#, #""""#, #"[{"role": 3}]"#, #"[{"from": "alien", "value": "x"}]"#,
                          #"[{"role": "user", "content": {"a": 1}}]"#, #"[{"role": "assistant", "content": [{"type": "image"}]}]"#,
                          #"[{"role": "assistant", "content": "x", "loss_weight": "heavy"}]"#, #""{{name}}""#]
        let extensions = ["jsonl", "json", "csv", "tsv", "txt", "jsonl.gz", "bin"]
        var opts = DataOptions(sequenceLen: 256)
        opts.skipBadRows = true
        opts.refuseOnProblems = false
        let builder = try DatasetBuilder(tokenizer: Shared.tokenizer, options: opts)
        var outcomes = [0, 0]
        for i in 0..<300 {
            var bytes: [UInt8]
            let seed = seeds[Int(rng.next() % UInt64(seeds.count))]
            switch i % 7 {
            case 0:  // random bytes
                bytes = (0..<Int(rng.next() % 400)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            case 1:  // truncated
                bytes = Array(seed.prefix(Int(rng.next() % UInt64(seed.count + 1))))
            case 2:  // flipped bytes (invalid UTF-8, broken syntax)
                bytes = seed
                for _ in 0..<(1 + Int(rng.next() % 6)) where !bytes.isEmpty {
                    bytes[Int(rng.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: rng.next())
                }
            case 3:  // a value replaced by a value of the wrong type
                var s = String(decoding: seed, as: UTF8.self)
                if let r = s.range(of: #"": "[^"]*""#, options: .regularExpression) {
                    s.replaceSubrange(r, with: "\": " + junkValues[Int(rng.next() % UInt64(junkValues.count))])
                }
                bytes = Array(s.utf8)
            case 4:  // huge fields: a 4 MB one in a row that fails conversion, and one long enough to truncate
                let huge = String(repeating: "word ", count: 400_000)
                let long = String(repeating: "word ", count: 1_000 + Int(rng.next() % 3_000))
                bytes = Array("{\"instruction\": \"\(huge)\", \"output\": [1]}\n{\"text\": \"\(long)\"}\n".utf8)
            case 5:  // deep nesting
                let depth = 100 + Int(rng.next() % 2000)
                bytes = Array(("{\"messages\": " + String(repeating: "[", count: depth) + String(repeating: "]", count: Int(rng.next() % UInt64(depth))) + "}\n").utf8)
            default:  // invalid UTF-8 inside strings
                bytes = Array("{\"text\": \"ok \u{1F600} ".utf8) + [0xC3, 0x28, 0xFF, 0xED, 0xA0, 0x80] + Array("\"}\n".utf8) + seed
            }
            // The huge-field rows stay JSON lines: as .txt their 2 MB line would be tokenized as text (slow in debug builds).
            let ext = i % 7 == 4 ? "jsonl" : extensions[Int(rng.next() % UInt64(extensions.count))]
            let url = dir.appendingPathComponent("case\(i).\(ext)")
            try Data(bytes).write(to: url)
            do {
                _ = try builder.build([DatasetSpec(path: url.path)])
                outcomes[0] += 1
            } catch let e as DataError {
                XCTAssertTrue(e.description.contains("case\(i)"), "error does not name the file: \(e)")
                outcomes[1] += 1
            } catch {
                XCTFail("case \(i) (\(ext)): not a DataError: \(error)")
            }
        }
        XCTAssertGreaterThan(outcomes[0], 20, "the fuzz cases should not all fail")
        XCTAssertGreaterThan(outcomes[1], 20, "the fuzz cases should not all succeed")
    }
}
