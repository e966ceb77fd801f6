import Foundation
import XCTest
import LoftFormats
import LoftModels
import LoftTensors
@testable import LoftTraining

/// QLoRA: one training step on the tiny Llama with an NF4 (double-quant)
/// base against PyTorch + PEFT on bitsandbytes' dequantize_4bit(quantize_4bit(W))
/// (fixture from tools/make_qlora_fixture.py): the loss within 1e-5 and every
/// LoRA gradient within 1e-4 relative, as for the f32 base. Then the config
/// keys, and merge onto the dequantized 4-bit base.
final class QLoRATests: XCTestCase {
    let nf4DoubleQuant = BaseWeightFormat(kind: .nf4, doubleQuant: true)

    func testOneStepOnNF4BaseMatchesPEFT() throws {
        let dir = TestPaths.fixtures.appendingPathComponent("tiny_llama_qlora_nf4")
        let expected = try JSONDecoder().decode(PEFTExactnessTests.Expected.self,
                                                from: Data(contentsOf: dir.appendingPathComponent("expected.json")))
        guard case .path(let p) = expected.base else { return XCTFail("the fixture names the tiny model's directory") }
        let (model, _) = try ModelLoader.load(TestPaths.repoRoot.appendingPathComponent(p).path, baseWeights: nf4DoubleQuant)
        XCTAssertEqual(model.layers[0].q.frozen.kindDescription, "nf4+dq")
        try PEFTAdapter.load(dir.appendingPathComponent("initial_adapter").path, into: model)
        let mb = MicroBatch(sequences: zip(expected.input_ids, expected.labels).map { ($0, $1) })
        let step = TrainingStep(model: model, gradientCheckpointing: false)
        let loss = step.accumulate(mb, gradScale: 1 / Float(mb.targetCount)) / Double(mb.targetCount)
        XCTAssertEqual(loss, expected.loss, accuracy: 1e-5 * abs(expected.loss))
        // the f32 base's loss is far from it, so this cannot pass on unquantized weights
        let f32Loss = try JSONDecoder().decode(PEFTExactnessTests.Expected.self, from: Data(contentsOf:
            TestPaths.fixtures.appendingPathComponent("tiny_llama/expected.json"))).loss
        XCTAssertGreaterThan(abs(f32Loss - expected.loss), 1e-3 * abs(expected.loss))
        let grads = try SafetensorsCheckpoint(path: dir.appendingPathComponent("grads.safetensors").path)
        var checked = 0
        for slot in model.adapterSlots {
            for (got, suffix) in [(slot.lora.gradA!, "A"), (slot.lora.gradB!, "B")] {
                let want = try grads.floats(named: slot.peftPrefix + ".lora_\(suffix).weight")
                let g = got.toArray()
                let scale = Double(want.map { abs($0) }.max()!), err = Double(zip(g, want).map { abs($0 - $1) }.max()!)
                XCTAssertLessThanOrEqual(err, 1e-4 * scale, "\(slot.peftPrefix) \(suffix): max |Δ| \(err), max |ref| \(scale)")
                checked += 1
            }
        }
        XCTAssertEqual(checked, grads.tensorNames.count)
    }

    func config(_ yaml: String) throws -> TrainConfig { try TrainConfig.fromYAML(yaml) }

    func testConfigKeys() throws {
        var c = try config("adapter: qlora\nload_in_4bit: true\nbnb_4bit_compute_dtype: bfloat16\n")
        XCTAssertEqual(c.baseWeights, nf4DoubleQuant, "Axolotl's defaults: nf4 with double quant")
        XCTAssertEqual(c.computeDType, "bf16")
        c = try config("adapter: qlora\nload_in_4bit: true\nbnb_4bit_quant_type: fp4\nbnb_4bit_use_double_quant: false\n")
        XCTAssertEqual(c.baseWeights, BaseWeightFormat(kind: .fp4, doubleQuant: false))
        XCTAssertEqual(try config("load_in_8bit: true\n").baseWeights.kind, .int8)
        XCTAssertEqual(try config("bf16: true\n").baseWeights.kind, .bf16)
        XCTAssertEqual(try config("bf16: auto\n").baseWeights.kind, .f32)
        XCTAssertEqual(try config("keep_gguf_quantization: true\n").baseWeights.kind, .gguf)
        XCTAssertEqual(try config("").baseWeights, .f32)
        XCTAssertThrowsError(try config("adapter: qlora\n")) { e in
            XCTAssertTrue("\(e)".contains("adapter: qlora needs load_in_4bit: true"), "\(e)")
        }
        XCTAssertThrowsError(try config("load_in_4bit: true\nload_in_8bit: true\nbnb_4bit_quant_type: nf2\n")) { e in
            let text = "\(e)"
            XCTAssertTrue(text.contains("load_in_4bit and load_in_8bit are all set"), text)
            XCTAssertTrue(text.contains("bnb_4bit_quant_type: 'nf2' is not supported; use nf4 or fp4"), text)
        }
    }

    /// The adapter of the one-step fixture, recorded as trained on an NF4
    /// (double-quant) base, and what folding it onto dequant(NF4(W)) gives for
    /// layer 1's down_proj, in float64: the expected merged rows, and the
    /// original weights (a merge onto them must be told apart).
    func qloraAdapterAndExpectedDownProj() throws -> (adapter: String, tiny: String, want: [Double], original: [Float]) {
        let tiny = TestPaths.repoRoot.appendingPathComponent("Tests/LoftModelsTests/Fixtures/tiny/llama").path
        let fm = FileManager.default
        let adapter = fm.temporaryDirectory.appendingPathComponent("loft-qlora-adapter-\(UUID().uuidString)").path
        try fm.copyItem(atPath: TestPaths.fixtures.appendingPathComponent("tiny_llama_qlora_nf4/initial_adapter").path, toPath: adapter)
        try nf4DoubleQuant.write(toDirectory: adapter)
        let w = try SafetensorsCheckpoint(path: tiny).floats(named: "model.layers.1.mlp.down_proj.weight")
        let (rows, cols) = (64, 96)
        let w4 = BnBQuantizer.quantize4bit(w, rows: rows, cols: cols, type: .nf4, doubleQuant: true).dequantized()
        let ad = try SafetensorsCheckpoint(path: adapter + "/adapter_model.safetensors")
        let a = try ad.floats(named: "base_model.model.model.layers.1.mlp.down_proj.lora_A.weight")
        let b = try ad.floats(named: "base_model.model.model.layers.1.mlp.down_proj.lora_B.weight")
        let r = a.count / cols
        var want = [Double](repeating: 0, count: rows * cols)
        for o in 0 ..< rows {
            for j in 0 ..< cols {
                var delta = 0.0
                for k in 0 ..< r { delta += 2 * Double(b[o * r + k]) * Double(a[k * cols + j]) }  // scale α/r = 8/4
                want[o * cols + j] = Double(w4[o * cols + j]) + delta
            }
        }
        return (adapter, tiny, want, w)
    }

    func assertMerged(_ got: [Float], _ c: (adapter: String, tiny: String, want: [Double], original: [Float]),
                      accuracy: Double, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(got.count, c.want.count, file: file, line: line)
        var err = 0.0, offOriginal = 0.0
        for i in 0 ..< min(got.count, c.want.count) {
            err = max(err, abs(Double(got[i]) - c.want[i]))
            offOriginal = max(offOriginal, abs(Double(c.original[i]) - c.want[i]))
        }
        XCTAssertLessThanOrEqual(err, accuracy, "max |merged - (dequant(NF4(W)) + ΔW)|", file: file, line: line)
        // merging onto the unquantized weights would be off by the NF4 error
        XCTAssertGreaterThan(offOriginal, 100 * accuracy, "the fixture cannot tell the bases apart", file: file, line: line)
    }

    /// merge folds the adapter onto dequant(NF4(W)) — the base it was trained
    /// against — when the adapter directory records a 4-bit base.
    func testMergeUsesTheQuantizedBase() throws {
        let c = try qloraAdapterAndExpectedDownProj()
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("loft-qlora-merged-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: c.adapter); try? FileManager.default.removeItem(atPath: out) }
        let report = try ModelMerger.merge(modelPath: c.tiny, adapter: c.adapter, to: out, options: .init(dtype: .fp32))
        XCTAssertTrue(report.notes.contains { $0.contains("nf4 (double quant) base") }, "\(report.notes)")
        assertMerged(try SafetensorsCheckpoint(path: out).floats(named: "model.layers.1.mlp.down_proj.weight"), c, accuracy: 1e-6)
    }

    /// `export gguf --adapter` takes the same path: the F32 GGUF's ffn_down of
    /// block 1 is dequant(NF4(W)) + ΔW.
    func testGGUFExportUsesTheQuantizedBase() throws {
        let c = try qloraAdapterAndExpectedDownProj()
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("loft-qlora-\(UUID().uuidString).gguf").path
        defer { try? FileManager.default.removeItem(atPath: c.adapter); try? FileManager.default.removeItem(atPath: out) }
        let report = try GGUFExporter.export(modelPath: c.tiny, adapter: c.adapter, to: out, type: .f32)
        XCTAssertTrue(report.notes.contains { $0.contains("nf4 (double quant) base") }, "\(report.notes)")
        let file = try GGUFFile(path: out)
        let tensor = try XCTUnwrap(file.tensor(named: "blk.1.ffn_down.weight"))
        assertMerged(try file.dequantize(tensor), c, accuracy: 1e-6)
    }
}
