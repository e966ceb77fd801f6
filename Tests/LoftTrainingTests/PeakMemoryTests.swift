import Foundation
import XCTest

/// Done-when for the memory planner: real `loft train` runs (SmolLM2-135M,
/// two steps) record their own peak RSS, and it lies within 15% of what
/// `loft plan` predicted for the same config.
final class PeakMemoryTests: XCTestCase {
    var loft: String {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("loft").path
    }

    /// Each case is extra config lines: every base storage, with and without
    /// gradient checkpointing.
    static let cases: [(name: String, lines: String)] = [
        ("f32", "gradient_checkpointing: false"),
        ("f32, gradient checkpointing", "gradient_checkpointing: true"),
        ("bf16 base", "bf16: true"),
        ("int8 base", "load_in_8bit: true"),
        ("nf4 base", "adapter: qlora\nload_in_4bit: true\nbnb_4bit_quant_type: nf4\nbnb_4bit_use_double_quant: true"),
        ("nf4 base, gradient checkpointing", "adapter: qlora\nload_in_4bit: true\ngradient_checkpointing: true"),
        ("GGUF kept quantized", "keep_gguf_quantization: true"),
    ]

    func run(_ args: [String]) throws -> (status: Int32, output: Data) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: loft)
        p.arguments = args
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = FileHandle.nullDevice
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, data)
    }

    func testPeakRSSOfRealRunsIsWithinFifteenPercentOfThePlan() throws {
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: loft), "loft is not built beside the tests at \(loft)")
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("loft-rss-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        // Rows of ~90 tokens packed into micro-batches of 2 × 128: bins fill nearly to the planned 256 tokens.
        let rows = (0 ..< 24).map { i in
            let text = (0 ..< 6).map { j in "The number \(i * 7 + j) is followed by \(i * 7 + j + 1)." }.joined(separator: " ")
            return #"{"instruction": "Count upward from \#(i * 7).", "input": "", "output": "\#(text)"}"#
        }
        try rows.joined(separator: "\n").write(toFile: root + "/data.jsonl", atomically: true, encoding: .utf8)

        for (index, c) in Self.cases.enumerated() {
            let config = root + "/run\(index).yaml"
            try """
            base_model: \(TestPaths.smolLM2)
            datasets: [{path: data.jsonl, type: alpaca}]
            sequence_len: 128
            sample_packing: true
            lora_r: 8
            lora_alpha: 16
            lora_dropout: 0.05
            lora_target_linear: true
            micro_batch_size: 2
            max_steps: 2
            learning_rate: 0.001
            output_dir: out\(index)
            \(c.lines)
            """.write(toFile: config, atomically: true, encoding: .utf8)

            let plan = try run(["plan", config, "--json", "--memory", "64GB"])
            XCTAssertEqual(plan.status, 0, c.name)
            let planned = try XCTUnwrap((try JSONSerialization.jsonObject(with: plan.output) as? [String: Any])?["predicted_peak_bytes"] as? Int)

            let train = try run(["train", config, "--json"])
            XCTAssertEqual(train.status, 0, c.name)
            let meta = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: root + "/out\(index)/loft_run.json"))) as? [String: Any])
            let measured = try XCTUnwrap(meta["peak_rss_bytes"] as? Int, "loft_run.json records peak_rss_bytes")
            XCTAssertEqual(meta["predicted_peak_bytes"] as? Int, planned, "\(c.name): the run records the plan it was checked against")
            if index == 0, FileManager.default.isExecutableFile(atPath: "/usr/bin/sha256sum") {
                let p = Process()
                p.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
                p.arguments = [TestPaths.smolLM2]
                let pipe = Pipe()
                p.standardOutput = pipe
                try p.run()
                let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                p.waitUntilExit()
                XCTAssertEqual(meta["base_model_sha256"] as? String, out.split(separator: " ").first.map(String.init),
                               "loft_run.json's base_model_sha256 is the file's SHA-256")
            }
            let metrics = try String(contentsOfFile: root + "/out\(index)/metrics.jsonl", encoding: .utf8)
            XCTAssertTrue(metrics.contains("\"peak_rss_bytes\""), "metrics.jsonl records peak_rss_bytes")

            let ratio = Double(measured) / Double(planned)
            print(String(format: "peak RSS %@: measured %.1f MiB, planned %.1f MiB, measured/planned %.3f",
                         c.name, Double(measured) / 1048576, Double(planned) / 1048576, ratio))
            XCTAssertEqual(ratio, 1, accuracy: 0.15, "\(c.name): measured \(measured) B vs planned \(planned) B")
        }
    }
}
