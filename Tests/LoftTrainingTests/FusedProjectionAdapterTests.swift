import Foundation
import XCTest
import LoftFormats
import LoftModels
import LoftTraining
import LoftTestSupport

/// Target modules on Phi-3's fused projections: the names a config gives
/// (all-linear, q_proj, qkv_proj …) land on the modules the model has, and
/// the adapter Loft saves is the one PEFT writes for the same targets.
final class FusedProjectionAdapterTests: XCTestCase {
    static let tiny = SharedTestPaths.fixtures(of: "LoftModelsTests").appendingPathComponent("tiny")

    func modules(_ model: LlamaModel) -> [String] { Set(model.adapterSlots.map(\.module)).sorted() }

    func testAllLinearOnPhi3AdaptsItsFourModulesAsPEFTDoes() throws {
        let (model, _) = try ModelLoader.load(Self.tiny.appendingPathComponent("phi3").path)
        let slots = try model.attachLoRA(LoRAConfig(rank: 4, alpha: 8), seed: 1)  // targets: all-linear
        XCTAssertEqual(modules(model), ["down_proj", "gate_up_proj", "o_proj", "qkv_proj"])
        XCTAssertEqual(slots.count, 8)
        let qkv = try XCTUnwrap(slots.first { $0.module == "qkv_proj" })
        XCTAssertEqual(qkv.lora.a.shape, [4, 64])
        XCTAssertEqual(qkv.lora.b.shape, [64 + 2 * 32, 4])

        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("loft-fused-\(UUID().uuidString)").path
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        try PEFTAdapter.save(model, config: LoRAConfig(rank: 4, alpha: 8), baseModel: "tiny/phi3", to: dir)
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/adapter_config.json"))) as? [String: Any]
        XCTAssertEqual(config?["target_modules"] as? [String], ["down_proj", "gate_up_proj", "o_proj", "qkv_proj"])
        // The same tensor names as the adapter PEFT itself saved for these targets.
        let peft = try SafetensorsCheckpoint(path: TestPaths.fixtures.appendingPathComponent("tiny_phi3/initial_adapter/adapter_model.safetensors").path)
        XCTAssertEqual(try SafetensorsCheckpoint(path: dir + "/adapter_model.safetensors").tensorNames, peft.tensorNames)
    }

    func testPartNamesMapOntoFusedModulesAndBack() throws {
        let (phi3, _) = try ModelLoader.load(Self.tiny.appendingPathComponent("phi3").path)
        try phi3.attachLoRA(LoRAConfig(rank: 4, alpha: 8, targetModules: ["q_proj", "v_proj"]), seed: 1)
        XCTAssertEqual(modules(phi3), ["qkv_proj"], "q_proj and v_proj name Phi-3's qkv_proj")
        phi3.detachLoRA()
        try phi3.attachLoRA(LoRAConfig(rank: 4, alpha: 8, targetModules: ["up_proj", "down_proj"]), seed: 1)
        XCTAssertEqual(modules(phi3), ["down_proj", "gate_up_proj"])

        let (llama, _) = try ModelLoader.load(Self.tiny.appendingPathComponent("llama").path)
        try llama.attachLoRA(LoRAConfig(rank: 4, alpha: 8, targetModules: ["qkv_proj"]), seed: 1)
        XCTAssertEqual(modules(llama), ["k_proj", "q_proj", "v_proj"], "qkv_proj names a Llama's three projections")

        XCTAssertThrowsError(try llama.attachLoRA(LoRAConfig(rank: 4, alpha: 8, targetModules: ["qkv"]), seed: 1)) { error in
            XCTAssertTrue("\(error)".contains("qkv_proj"), "\(error)")
        }
    }
}
