import Foundation
import XCTest
import LoftFormats
@testable import LoftModels
import LoftTensors

/// DoRA adapters written by PEFT (use_dora: true, `…lora_magnitude_vector`):
/// loaded, written back in PEFT's form, merged as
/// W' = m/‖W + s·B·A‖_row · (W + s·B·A), and refused by the llama.cpp LoRA export.
final class DoRAAdapterTests: XCTestCase {
    static let adapter = TestPaths.repoRoot.appendingPathComponent("Tests/LoftTrainingTests/Fixtures/tiny_llama_dora/initial_adapter").path
    static let base = TestPaths.fixtures.appendingPathComponent("tiny/llama").path
    let ids: [Int32] = [1, 17, 42, 99, 5, 63, 120, 7]

    func temp(_ name: String) -> String {
        let p = FileManager.default.temporaryDirectory.appendingPathComponent("loft-dora-\(UUID().uuidString)-\(name)").path
        addTeardownBlock { try? FileManager.default.removeItem(atPath: p) }
        return p
    }

    func maxRel(_ got: [Float], _ want: [Float]) -> Float {
        let scale = want.map { abs($0) }.max() ?? 1
        return (zip(got, want).map { abs($0 - $1) }.max() ?? 0) / scale
    }

    func testMergeMatchesAdapterAndDiffersFromPlainLoRA() throws {
        let (model, _) = try ModelLoader.load(Self.base)
        let config = try PEFTAdapter.load(Self.adapter, into: model)
        XCTAssertTrue(config.useDoRA)
        XCTAssertTrue(model.adapterSlots.allSatisfy { $0.lora.magnitude != nil })
        let dora = model.forward(ids: ids).toArray()
        // The same A and B without the magnitude: the DoRA scale must matter.
        for slot in model.adapterSlots { slot.lora.magnitude = nil }
        let plain = model.forward(ids: ids).toArray()
        XCTAssertGreaterThan(maxRel(plain, dora), 1e-3, "DoRA's magnitude must change the logits for this test to mean anything")

        let out = temp("merged")
        let report = try ModelMerger.merge(modelPath: Self.base, adapter: Self.adapter, to: out, options: .init(dtype: .fp32))
        XCTAssertEqual(report.mergedProjections, model.adapterSlots.count)
        let (merged, _) = try ModelLoader.load(out)
        XCTAssertLessThan(maxRel(merged.forward(ids: ids).toArray(), dora), 1e-4, "merged vs base + DoRA adapter")
    }

    func testSavedAdapterIsPEFTsAndLoadsBack() throws {
        let (model, _) = try ModelLoader.load(Self.base)
        let config = try PEFTAdapter.load(Self.adapter, into: model)
        let out = temp("saved")
        try PEFTAdapter.save(model, config: config, baseModel: Self.base, to: out)
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/adapter_config.json"))) as? [String: Any]
        XCTAssertEqual(json?["use_dora"] as? Bool, true)
        let written = try SafetensorsCheckpoint(path: out + "/adapter_model.safetensors")
        let original = try SafetensorsCheckpoint(path: Self.adapter + "/adapter_model.safetensors")
        XCTAssertEqual(Set(written.tensorNames), Set(original.tensorNames), "the same keys as PEFT's save_pretrained")
        for name in original.tensorNames {
            XCTAssertEqual(try written.floats(named: name), try original.floats(named: name), name)
        }
        // A DoRA config without its magnitudes is refused with the key named.
        let broken = temp("broken")
        try FileManager.default.createDirectory(atPath: broken, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: out + "/adapter_config.json", toPath: broken + "/adapter_config.json")
        var writer = SafetensorsWriter()
        for name in original.tensorNames where !name.hasSuffix("lora_magnitude_vector") {
            let t = original.tensor(named: name)!
            try writer.add(name: name, shape: t.shape, floats: t.floats())
        }
        try writer.write(to: broken + "/adapter_model.safetensors")
        XCTAssertThrowsError(try PEFTAdapter.load(broken, into: model)) { error in
            XCTAssertTrue("\(error)".contains("lora_magnitude_vector is missing"), "\(error)")
        }
    }

    func testGGUFLoRAExportRefusesDoRA() throws {
        let out = temp("lora.gguf")
        XCTAssertThrowsError(try GGUFLoRAExporter.export(adapter: Self.adapter, base: Self.base, to: out)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("DoRA") && text.contains("loft merge") && text.contains("loft export gguf"), text)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out), "nothing is written")
    }
}

/// modules_to_save adapters written by PEFT on a tied model: the trained
/// lm_head copy is used at inference, and the merge writes it untied.
final class ModulesToSaveAdapterTests: XCTestCase {
    static let adapter = TestPaths.repoRoot.appendingPathComponent("Tests/LoftTrainingTests/Fixtures/tiny_llama_tied_full_head_embed/initial_adapter").path
    static let base = TestPaths.fixtures.appendingPathComponent("tiny/llama_tied").path
    let ids: [Int32] = [1, 17, 42, 99, 5, 63, 120, 7]

    func maxRel(_ got: [Float], _ want: [Float]) -> Float {
        let scale = want.map { abs($0) }.max() ?? 1
        return (zip(got, want).map { abs($0 - $1) }.max() ?? 0) / scale
    }

    func testLoadSaveMergeAndDetach() throws {
        let (model, _) = try ModelLoader.load(Self.base)
        let plain = model.forward(ids: ids).toArray()
        let config = try PEFTAdapter.load(Self.adapter, into: model)
        XCTAssertEqual(config.modulesToSave.sorted(), ["embed_tokens", "lm_head"])
        XCTAssertNotNil(model.trainedEmbedding)
        XCTAssertNotNil(model.trainedLMHead)
        XCTAssertTrue(model.lmHead.storage !== model.embedding.storage, "PEFT's copies are independent")
        let adapted = model.forward(ids: ids).toArray()

        let out = FileManager.default.temporaryDirectory.appendingPathComponent("loft-mts-\(UUID().uuidString)").path
        addTeardownBlock { try? FileManager.default.removeItem(atPath: out) }
        try PEFTAdapter.save(model, config: config, baseModel: Self.base, to: out + "/adapter")
        let written = try SafetensorsCheckpoint(path: out + "/adapter/adapter_model.safetensors")
        let original = try SafetensorsCheckpoint(path: Self.adapter + "/adapter_model.safetensors")
        XCTAssertEqual(Set(written.tensorNames), Set(original.tensorNames))
        XCTAssertEqual(try written.floats(named: "base_model.model.lm_head.weight"),
                       try original.floats(named: "base_model.model.lm_head.weight"))

        try ModelMerger.merge(modelPath: Self.base, adapter: Self.adapter, to: out + "/merged", options: .init(dtype: .fp32))
        let (merged, _) = try ModelLoader.load(out + "/merged")
        XCTAssertFalse(merged.config.tieWordEmbeddings, "the merged model has its own lm_head")
        XCTAssertLessThan(maxRel(merged.forward(ids: ids).toArray(), adapted), 1e-4, "merged vs base + adapter")

        model.detachLoRA()
        XCTAssertEqual(model.forward(ids: ids).toArray(), plain, "detaching restores the base embedding and head")
    }
}
