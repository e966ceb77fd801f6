import Foundation
import LoftFormats
import XCTest

/// `loft train` killed with SIGKILL mid-run and resumed with --resume writes
/// exactly the adapter an uninterrupted run writes (the real SmolLM2, a small
/// alpaca file, a few steps).
final class KillResumeTests: XCTestCase {
    /// The `loft` executable built beside this test bundle.
    var loft: String {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("loft").path
    }

    /// - variant: extra config lines, replacing the LoRA and step settings it names.
    func makeRun(_ root: String, name: String, variant: [String: String] = [:]) throws -> String {
        let data = root + "/data.jsonl"
        if !FileManager.default.fileExists(atPath: data) {
            let rows = (0 ..< 12).map { i in
                #"{"instruction": "What is \#(i) plus \#(i)?", "input": "", "output": "\#(i) plus \#(i) is \#(2 * i)."}"#
            }
            try rows.joined(separator: "\n").write(toFile: data, atomically: true, encoding: .utf8)
        }
        let config = root + "/\(name).yaml"
        var settings: [(String, String)] = [("lora_r", "2"), ("lora_alpha", "4"), ("max_steps", "8"), ("optimizer", "adamw_torch")]
        for i in settings.indices { if let v = variant[settings[i].0] { settings[i].1 = v } }
        try """
        base_model: \(TestPaths.smolLM2)
        datasets: [{path: \(data), type: alpaca}]
        sequence_len: 64
        sample_packing: true
        \(settings.map { "\($0.0): \($0.1)" }.joined(separator: "\n"))
        lora_dropout: 0.1
        lora_target_modules: [q_proj, v_proj]
        micro_batch_size: 2
        gradient_accumulation_steps: 2
        learning_rate: 0.001
        warmup_steps: 2
        save_steps: 2
        seed: 3
        output_dir: \(root)/\(name)
        """.write(toFile: config, atomically: true, encoding: .utf8)
        return config
    }

    func start(_ args: [String]) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: loft)
        p.arguments = args
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        return p
    }

    func testSIGKILLThenResumeGivesTheSameAdapter() throws {
        try killAndResume(variant: [:], steps: 8)
    }

    /// The same with 8-bit AdamW: rank 8 makes q's A and B and v's A 8-bit
    /// (≥ 4096 elements) and v's B f32, so both kinds of saved state resume.
    func testSIGKILLThenResumeWithEightBitAdamW() throws {
        try killAndResume(variant: ["optimizer": "adamw_8bit", "lora_r": "8", "lora_alpha": "16", "max_steps": "6"], steps: 6)
    }

    func killAndResume(variant: [String: String], steps: Int) throws {
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: loft), "loft is not built beside the tests at \(loft)")
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("loft-kill-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }

        let full = try start(["train", try makeRun(root, name: "full", variant: variant), "--json"])
        full.waitUntilExit()
        XCTAssertEqual(full.terminationStatus, 0)
        if variant["optimizer"] == "adamw_8bit" {
            let saved = try SafetensorsFile(path: root + "/full/checkpoint-2/optimizer.safetensors")
            XCTAssertTrue(saved.tensors.contains { $0.name.hasSuffix("lora_A.weight.exp_avg.codes") }, "8-bit moments are saved as codes")
            XCTAssertTrue(saved.tensors.contains { $0.name.hasSuffix("v_proj.lora_B.weight.exp_avg") }, "small tensors keep f32 moments")
        }

        let config = try makeRun(root, name: "cut", variant: variant)
        let victim = try start(["train", config, "--json"])
        let deadline = Date().addingTimeInterval(300)
        while !FileManager.default.fileExists(atPath: root + "/cut/checkpoint-2") && victim.isRunning && Date() < deadline {
            usleep(20_000)
        }
        XCTAssertTrue(victim.isRunning, "the run ended before it could be killed; make it longer")
        kill(victim.processIdentifier, SIGKILL)
        victim.waitUntilExit()
        XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/cut/adapter_model.safetensors"))

        let resumed = try start(["train", config, "--resume", "--json"])
        resumed.waitUntilExit()
        XCTAssertEqual(resumed.terminationStatus, 0)

        let a = try Data(contentsOf: URL(fileURLWithPath: root + "/full/adapter_model.safetensors"))
        let b = try Data(contentsOf: URL(fileURLWithPath: root + "/cut/adapter_model.safetensors"))
        XCTAssertEqual(a, b, "the resumed run's adapter is byte-identical to the uninterrupted run's")
        let lossesA = try String(contentsOfFile: root + "/full/loft_run.json", encoding: .utf8)
        let lossesB = try String(contentsOfFile: root + "/cut/loft_run.json", encoding: .utf8)
        func losses(_ s: String) throws -> [Double] {
            (try JSONSerialization.jsonObject(with: Data(s.utf8)) as! [String: Any])["losses"] as! [Double]
        }
        XCTAssertEqual(try losses(lossesA), try losses(lossesB))
        XCTAssertEqual(try losses(lossesA).count, steps)
    }
}
