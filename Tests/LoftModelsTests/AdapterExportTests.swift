import Foundation
import XCTest
import LoftFormats
import LoftInference
@testable import LoftModels
import LoftTemplates
import LoftTensors

/// `loft export gguf-lora` and `loft export ollama`.
final class AdapterExportTests: XCTestCase {
    static let trainingFixtures = TestPaths.repoRoot.appendingPathComponent("Tests/LoftTrainingTests/Fixtures")

    func temp(_ name: String) -> String {
        let p = FileManager.default.temporaryDirectory.appendingPathComponent("loft-aexport-\(UUID().uuidString)-\(name)").path
        addTeardownBlock { try? FileManager.default.removeItem(atPath: p) }
        return p
    }

    /// The LoRA GGUF holds PEFT's A and B (B's q/k rows permuted as llama.cpp
    /// permutes the base), and llama.cpp's arithmetic on it, W_gguf + (alpha/r)·B·A,
    /// gives the merged export's weights.
    func testGGUFLoRAMatchesPEFTAndMergedExport() throws {
        let base = TestPaths.fixtures.appendingPathComponent("tiny/llama").path
        let adapter = Self.trainingFixtures.appendingPathComponent("tiny_llama/initial_adapter").path
        let out = temp("lora.gguf")
        let report = try GGUFLoRAExporter.export(adapter: adapter, base: base, to: out)
        let lora = try GGUFFile(path: out)
        XCTAssertEqual(lora.metadata["general.type"], .string("adapter"))
        XCTAssertEqual(lora.metadata["adapter.type"], .string("lora"))
        XCTAssertEqual(lora.architecture, "llama")
        let peftConfig = try PEFTAdapter.readConfig(adapter)
        let alpha = try XCTUnwrap(lora.metadata["adapter.lora.alpha"]?.float)
        XCTAssertEqual(alpha / Float(peftConfig.rank), peftConfig.scale, accuracy: 1e-7)
        XCTAssertEqual(report.tensors, lora.tensors.count)
        XCTAssertEqual(lora.tensors.count, 2 * 7 * 2)

        let peft = try SafetensorsCheckpoint(path: adapter + "/adapter_model.safetensors")
        let baseGGUF = temp("base.gguf"), mergedGGUF = temp("merged.gguf")
        try GGUFExporter.export(modelPath: base, adapter: nil, to: baseGGUF, type: .f32)
        try GGUFExporter.export(modelPath: base, adapter: adapter, to: mergedGGUF, type: .f32)
        let (bf, mf) = (try GGUFFile(path: baseGGUF), try GGUFFile(path: mergedGGUF))
        let (heads, kvHeads) = (4, 2)
        for layer in 0 ..< 2 {
            for (module, gg) in [("self_attn.q_proj", "attn_q"), ("self_attn.k_proj", "attn_k"), ("self_attn.v_proj", "attn_v"),
                                 ("self_attn.o_proj", "attn_output"), ("mlp.gate_proj", "ffn_gate"), ("mlp.up_proj", "ffn_up"),
                                 ("mlp.down_proj", "ffn_down")] {
                let name = "blk.\(layer).\(gg).weight"
                let aInfo = try XCTUnwrap(lora.tensor(named: name + ".lora_a")), bInfo = try XCTUnwrap(lora.tensor(named: name + ".lora_b"))
                let wInfo = try XCTUnwrap(bf.tensor(named: name))
                // llama.cpp's checks (llama-adapter.cpp): a.ne[0] = W.ne[0], b.ne[1] = W.ne[1], a.ne[1] = b.ne[0] = r.
                XCTAssertEqual(aInfo.dimensions[0], wInfo.dimensions[0], name)
                XCTAssertEqual(bInfo.dimensions[1], wInfo.dimensions[1], name)
                XCTAssertEqual(aInfo.dimensions[1], bInfo.dimensions[0], name)
                let prefix = "base_model.model.model.layers.\(layer).\(module)"
                let pa = try XCTUnwrap(peft.tensor(named: prefix + ".lora_A.weight")).floats()
                var pb = try XCTUnwrap(peft.tensor(named: prefix + ".lora_B.weight")).floats()
                let (a, b) = (try lora.dequantize(aInfo), try lora.dequantize(bInfo))
                XCTAssertEqual(a, pa, name)
                let (out, r, inF) = (bInfo.shape[0], bInfo.shape[1], aInfo.shape[1])
                if gg == "attn_q" || gg == "attn_k" {
                    XCTAssertNotEqual(b, pb, "\(name): B's rows are permuted")
                    try pb.withUnsafeMutableBufferPointer { try permuteLlamaQK($0.baseAddress!, rows: out, cols: r, heads: gg == "attn_q" ? heads : kvHeads) }
                }
                XCTAssertEqual(b, pb, name)
                let w = try bf.dequantize(wInfo), merged = try mf.dequantize(mf.tensor(named: name)!)
                for o in 0 ..< out { for i in 0 ..< inF {
                    var delta: Float = 0
                    for k in 0 ..< r { delta += b[o * r + k] * a[k * inF + i] }
                    XCTAssertEqual(w[o * inF + i] + alpha / Float(r) * delta, merged[o * inF + i], accuracy: 1e-6, "\(name)[\(o),\(i)]")
                } }
            }
        }
        XCTAssertThrowsError(try GGUFLoRAExporter.export(adapter: adapter, base: base, to: out)) { XCTAssertTrue("\($0)".contains("--overwrite")) }
    }

    func template(_ file: String) throws -> ChatTemplate {
        let src = try String(contentsOf: TestPaths.repoRoot.appendingPathComponent("Tests/LoftTemplatesTests/Fixtures/templates/\(file)"), encoding: .utf8)
        return try ChatTemplate(src, bosToken: "<s>", eosToken: "</s>")
    }

    static let llama3 = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"

    /// The translated format renders conversations exactly as the Jinja template does.
    func testOllamaTemplateTranslationRendersAsJinja() throws {
        let cases: [(String, ChatTemplate, String?)] = [
            ("chatml", try template("HuggingFaceTB-SmolLM2-135M-Instruct.jinja"), "You are a helpful AI assistant named SmolLM, trained by Hugging Face"),
            ("chatml", try template("Qwen-Qwen2.5-7B-Instruct.jinja"), "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."),
            ("llama3", try ChatTemplate(Self.llama3, bosToken: "<|begin_of_text|>"), nil),
        ]
        let conversations: [[(role: String, content: String)]] = [
            [("user", "Hi there")],
            [("system", "Be brief."), ("user", "Why is the sky blue?"), ("assistant", "Rayleigh scattering."), ("user", "Thanks")],
            [("user", "a"), ("assistant", "b"), ("user", "c")],
        ]
        for (family, t, defaultSystem) in cases {
            let f = try OllamaExporter.chatFormat(t)
            XCTAssertEqual(f.name, family)
            XCTAssertEqual(f.defaultSystem, defaultSystem)
            for conv in conversations {
                var want = try t.render(messages: conv.map { ["role": .string($0.role), "content": .string($0.content)] }, addGenerationPrompt: true)
                if want.hasPrefix("<|begin_of_text|>") { want.removeFirst("<|begin_of_text|>".count) }  // llama.cpp adds BOS
                XCTAssertEqual(f.render(conv), want, "\(family) \(conv.map(\.role))")
            }
            let modelfile = OllamaExporter.modelfile(ggufName: "model.gguf", format: f)
            XCTAssertTrue(modelfile.hasPrefix("FROM ./model.gguf\n"))
            for stop in f.stops { XCTAssertTrue(modelfile.contains("PARAMETER stop \"\(stop)\"\n"), stop) }
            XCTAssertTrue(modelfile.contains("{{- range .Messages }}"))
        }
        // The ChatML Go template, spelled out.
        let smol = try OllamaExporter.chatFormat(try template("Qwen-Qwen2.5-7B-Instruct.jinja"))
        XCTAssertEqual(smol.goTemplate, "{{- if or (not .Messages) (ne (index .Messages 0).Role \"system\") }}<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n{{ end }}{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n")
        // Templates that rewrite the system message, or other families, are refused with the fix.
        XCTAssertThrowsError(try OllamaExporter.chatFormat(try template("meta-llama-Llama-3.1-8B-Instruct.jinja"))) {
            XCTAssertTrue("\($0)".contains("by hand"), "\($0)")
        }
        XCTAssertThrowsError(try OllamaExporter.chatFormat(try template("meta-llama-Llama-2-7b-chat-hf.jinja")))
    }
}
