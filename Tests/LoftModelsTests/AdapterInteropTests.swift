import Foundation
import XCTest
import LoftFormats
import LoftInference
@testable import LoftModels
import LoftTemplates

/// Adapters from other trainers, and the tokenizer files an adapter carries.
final class AdapterInteropTests: XCTestCase {
    static let mlxFixture = TestPaths.fixtures.appendingPathComponent("mlx_adapter")
    static let tinyLlama = TestPaths.fixtures.appendingPathComponent("tiny/llama").path

    func tempDir(_ name: String) throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("loft-interop-\(UUID().uuidString)-\(name)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir
    }

    func maxRel(_ got: [Float], _ want: [Float]) -> Float {
        let scale = want.map { abs($0) }.max() ?? 1
        return (zip(got, want).map { abs($0 - $1) }.max() ?? .infinity) / scale
    }

    /// An adapter mlx-lm saved (tools/make_mlx_adapter_fixture.py: lora_a [in, r],
    /// lora_b [r, out], `scale`, only the last block adapted) gives mlx-lm's
    /// own logits (its load_adapters), which differ visibly from the base's.
    func testMLXAdapterGivesMLXLMLogits() throws {
        let expected = try JSONSerialization.jsonObject(with: Data(contentsOf: Self.mlxFixture.appendingPathComponent("expected.json"))) as! [String: Any]
        let ids = (expected["ids"] as! [Int]).map(Int32.init)
        let want = (expected["logits"] as! [NSNumber]).map(\.floatValue)
        XCTAssertGreaterThan((expected["base_logit_difference"] as! NSNumber).doubleValue, 1e-2, "the fixture adapter must matter")
        let (model, _) = try ModelLoader.load(Self.tinyLlama)
        XCTAssertEqual(try PEFTAdapter.format(of: Self.mlxFixture.path), .mlx)
        let config = try PEFTAdapter.load(Self.mlxFixture.path, into: model)
        XCTAssertEqual(config.rank, 4)
        XCTAssertEqual(config.scale, 3)
        XCTAssertEqual(Set(model.adapterSlots.map { "\($0.layer).\($0.module)" }), ["1.q_proj", "1.v_proj", "1.down_proj"])
        let got = model.forward(ids: ids).toArray()
        XCTAssertEqual(got.count, want.count)
        XCTAssertLessThan(maxRel(got, want), 1e-4, "Loft with the mlx-lm adapter vs mlx-lm")

        // Saved again by Loft it is a PEFT adapter with the same effect.
        let peft = try tempDir("peft")
        try PEFTAdapter.save(model, config: config, baseModel: Self.tinyLlama, to: peft.path)
        let (again, _) = try ModelLoader.load(Self.tinyLlama)
        try PEFTAdapter.load(peft.path, into: again)
        XCTAssertLessThan(maxRel(again.forward(ids: ids).toArray(), want), 1e-5)
        // And merging it works from the mlx directory as from any adapter.
        let merged = try tempDir("merged").appendingPathComponent("m").path
        try ModelMerger.merge(modelPath: Self.tinyLlama, adapter: Self.mlxFixture.path, to: merged)
        let (m, _) = try ModelLoader.load(merged)
        XCTAssertLessThan(maxRel(m.forward(ids: ids).toArray(), want), 1e-4, "merged mlx-lm adapter")
    }

    func testBadMLXAdaptersAreRefusedWithTheFix() throws {
        func attempt(_ config: [String: Any], tensors: Bool = true) throws -> String {
            let dir = try tempDir("bad")
            if tensors {
                try FileManager.default.copyItem(at: Self.mlxFixture.appendingPathComponent("adapters.safetensors"),
                                                 to: dir.appendingPathComponent("adapters.safetensors"))
            }
            try JSONSerialization.data(withJSONObject: config).write(to: dir.appendingPathComponent("adapter_config.json"))
            let (model, _) = try ModelLoader.load(Self.tinyLlama)
            do { try PEFTAdapter.load(dir.path, into: model) } catch { return "\(error)" }
            XCTFail("loaded \(config)"); return ""
        }
        XCTAssertTrue(try attempt(["fine_tune_type": "dora", "lora_parameters": ["rank": 4, "scale": 3]]).contains("DoRA"))
        XCTAssertTrue(try attempt(["fine_tune_type": "full"]).contains("full"))
        XCTAssertTrue(try attempt(["lora_parameters": ["rank": 4]]).contains("scale"))
        XCTAssertTrue(try attempt(["lora_parameters": ["rank": 8, "scale": 3]]).contains("r=8"), "a rank that does not fit the tensors")
        XCTAssertTrue(try attempt(["lora_parameters": ["rank": 4, "scale": 3]], tensors: false).contains("adapters.safetensors"))
    }

    /// `loft generate --messages` renders the conversation with the template
    /// the adapter was saved with (tokenizer_config.json here), whose special
    /// tokens also come from that file, and the adapter's EOS ends replies.
    func testAdapterTokenizerFilesDriveTemplateAndStops() throws {
        let src = TestPaths.repoRoot.appendingPathComponent("Tests/LoftTrainingTests/Fixtures/smollm2/initial_adapter")
        let dir = try tempDir("tok")
        for f in ["adapter_model.safetensors", "adapter_config.json"] {
            try FileManager.default.copyItem(at: src.appendingPathComponent(f), to: dir.appendingPathComponent(f))
        }
        let template = "{% for m in messages %}{{ bos_token }}[{{ m['role'] }}] {{ m['content'] }}{{ eos_token }}\n{% endfor %}{% if add_generation_prompt %}[assistant] {% endif %}"
        let tc: [String: Any] = ["chat_template": template, "bos_token": "<|im_start|>", "eos_token": ["content": "<|endoftext|>"]]
        try JSONSerialization.data(withJSONObject: tc).write(to: dir.appendingPathComponent("tokenizer_config.json"))
        let messages = dir.appendingPathComponent("chat.json")
        try Data(#"[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Who are you?"}]"#.utf8).write(to: messages)

        let lm = try LanguageModel(path: TestPaths.smolLM2, adapter: dir.path)
        let ids = try lm.promptIDs(messagesFile: messages.path)
        let text = "<|im_start|>[system] Be brief.<|endoftext|>\n<|im_start|>[user] Who are you?<|endoftext|>\n[assistant] "
        XCTAssertEqual(ids, lm.tokenizer.encode(text, addSpecialTokens: false).map(Int32.init))
        let eos = try XCTUnwrap(lm.tokenizer.tokenToID("<|endoftext|>"))
        XCTAssertTrue(lm.stopTokens.contains(Int32(eos)))
        // A chat_template.jinja beside it wins over tokenizer_config.json's.
        try "{% for m in messages %}{{ m['content'] }}|{% endfor %}".write(to: dir.appendingPathComponent("chat_template.jinja"), atomically: true, encoding: .utf8)
        try lm.setAdapter(dir.path)
        XCTAssertEqual(try lm.promptIDs(messagesFile: messages.path), lm.tokenizer.encode("Be brief.|Who are you?|", addSpecialTokens: false).map(Int32.init))
        // Detached, the base model's own template is back.
        try lm.setAdapter(nil)
        XCTAssertTrue(lm.tokenizer.decode(try lm.promptIDs(messagesFile: messages.path).map(Int.init), skipSpecialTokens: false).contains("<|im_start|>user\nWho are you?<|im_end|>"))

        try Data("{\"messages\": 3}".utf8).write(to: messages)
        XCTAssertThrowsError(try lm.promptIDs(messagesFile: messages.path)) { XCTAssertTrue("\($0)".contains("list of messages"), "\($0)") }
        try Data("[{\"content\": \"x\"}]".utf8).write(to: messages)
        XCTAssertThrowsError(try lm.promptIDs(messagesFile: messages.path)) { XCTAssertTrue("\($0)".contains("role"), "\($0)") }
    }
}
