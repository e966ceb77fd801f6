import Foundation
import XCTest
import LoftFormats
import LoftInference
@testable import LoftModels
import LoftTensors
import LoftTokenizers

/// `loft export gguf`: what Loft writes, Loft reads back as the same model,
/// and the `gguf` package reads every key and tensor as Loft wrote it
/// (fixture by tools/make_export_fixture_model.sh + tools/check_gguf_export.py dump).
final class GGUFExportTests: XCTestCase {
    static let trainingFixtures = TestPaths.repoRoot.appendingPathComponent("Tests/LoftTrainingTests/Fixtures")
    let ids: [Int32] = [1, 17, 42, 99, 5, 63, 120, 7]

    func temp(_ name: String) -> String {
        let p = FileManager.default.temporaryDirectory.appendingPathComponent("loft-export-\(UUID().uuidString)-\(name)").path
        addTeardownBlock { try? FileManager.default.removeItem(atPath: p) }
        return p
    }

    func maxRel(_ got: [Float], _ want: [Float]) -> Float {
        let scale = want.map { abs($0) }.max() ?? 1
        return (zip(got, want).map { abs($0 - $1) }.max() ?? .infinity) / scale
    }

    /// Base + adapter logits and the merged tensors, the reference for each export.
    func reference(_ base: String, _ adapter: String?) throws -> (logits: [Float], tensors: [String: MergedTensor]) {
        let (model, _) = try ModelLoader.load(base)
        if let adapter { try PEFTAdapter.load(adapter, into: model) }
        let merged = try ModelMerger.mergedTensors(model).tensors
        return (model.forward(ids: ids).toArray(), Dictionary(uniqueKeysWithValues: merged.map { ($0.name, $0) }))
    }

    /// Gemma 2 and 3: every weight reads back as merged (the norms' 1 + w
    /// added on export and removed on load), and the keys llama.cpp reads are
    /// written (soft-caps, window, head size). The tiny models' own layer
    /// pattern and query_pre_attn_scalar are not among them (llama.cpp fixes
    /// those per architecture), so their GGUF configs read back with
    /// llama.cpp's values, which is what a real checkpoint has.
    func testGemmaExportsReadBackExactly() throws {
        for arch in ["gemma2", "gemma3"] {
            let base = TestPaths.fixtures.appendingPathComponent("tiny/\(arch)").path
            let adapter = Self.trainingFixtures.appendingPathComponent("tiny_\(arch)/initial_adapter").path
            let ref = try reference(base, adapter)
            let out = temp("\(arch).gguf")
            try GGUFExporter.export(modelPath: base, adapter: adapter, to: out, type: .f32)
            let file = try GGUFFile(path: out)
            XCTAssertEqual(file.architecture, arch)
            let raw = try file.dequantize(file.tensor(named: "blk.0.post_ffw_norm.weight")!)
            XCTAssertEqual(raw, ref.tensors["model.layers.0.post_feedforward_layernorm.weight"]!.values.map { $0 + 1 }, "\(arch): stored as 1 + w")
            let config = try ModelConfig.fromGGUF(file)
            let hf = try ModelConfig.fromHF(path: base + "/config.json")
            XCTAssertEqual(config.slidingWindow, 8)
            XCTAssertEqual(config.headDim, 32)
            XCTAssertEqual(config.attentionSoftcap, hf.attentionSoftcap)
            XCTAssertEqual(config.finalLogitSoftcap, hf.finalLogitSoftcap)
            XCTAssertEqual(config.qkNorm, hf.qkNorm)
            let weights = GGUFWeights(file: file, config: config)
            for (name, t) in ref.tensors {
                // A norm comes back as (w + 1) − 1 in float, as transformers' GGUF loader computes it.
                let want = name.hasSuffix("norm.weight") ? t.values.map { ($0 + 1) - 1 } : t.values
                XCTAssertEqual(try XCTUnwrap(weights.load(name), name).toArray(), want, "\(arch) \(name)")
            }
        }
    }

    /// Phi-3: the fused attn_qkv and ffn_up (gate's rows, then up's) as
    /// llama.cpp's phi3 stores them, and LongRoPE's factors as the tensors
    /// rope_factors_short/long with the attention factor and the pretraining
    /// length as keys; the model read back gives base+adapter's logits on
    /// both sides of that length (8 tokens: short factors, 18: long).
    /// Phi-4-mini's partial rotary travels as rope.dimension_count (12 of 16).
    func testPhi3ExportReadsBackExactly() throws {
        for name in ["phi3", "phi4_mini"] { try checkPhi3Export(name) }
    }

    func checkPhi3Export(_ name: String) throws {
        let base = TestPaths.fixtures.appendingPathComponent("tiny/\(name)").path
        let adapter = Self.trainingFixtures.appendingPathComponent("tiny_\(name)/initial_adapter").path
        let ref = try reference(base, adapter)
        let out = temp("\(name).gguf")
        try GGUFExporter.export(modelPath: base, adapter: adapter, to: out, type: .f32)
        let file = try GGUFFile(path: out)
        XCTAssertEqual(file.architecture, "phi3")
        XCTAssertEqual(file.tensor(named: "blk.0.attn_qkv.weight")?.shape, [64 + 2 * 32, 64])
        XCTAssertEqual(file.tensor(named: "blk.0.ffn_up.weight")?.shape, [2 * 96, 64])
        XCTAssertNil(file.tensor(named: "blk.0.attn_q.weight"))
        XCTAssertNil(file.tensor(named: "blk.0.ffn_gate.weight"))
        var expected = try ModelConfig.fromHF(path: base + "/config.json").withoutTokens()
        if case .longRoPE(let short, let long, let original, let factor) = expected.ropeScaling {
            // GGUF keeps the factors as f32
            expected.ropeScaling = .longRoPE(shortFactor: short.map { Double(Float($0)) }, longFactor: long.map { Double(Float($0)) },
                                             originalContext: original, attentionFactor: Double(Float(factor)))
        } else {
            XCTFail("tiny phi3 has LongRoPE")
        }
        let config = try ModelConfig.fromGGUF(file)
        XCTAssertEqual(config, expected, name)
        XCTAssertEqual(config.rotaryDimensions, name == "phi4_mini" ? 12 : 16)
        let weights = GGUFWeights(file: file, config: config)
        for (tensor, t) in ref.tensors {
            XCTAssertEqual(try XCTUnwrap(weights.load(tensor), tensor).toArray(), t.values, "\(name) \(tensor)")
        }
        let (exported, _) = try ModelLoader.load(out)
        XCTAssertLessThan(maxRel(exported.forward(ids: ids).toArray(), ref.logits), 1e-5, "\(name) 8 tokens")
        let (model, _) = try ModelLoader.load(base)
        try PEFTAdapter.load(adapter, into: model)
        let long = ids + ids + [3, 4]
        XCTAssertLessThan(maxRel(exported.forward(ids: long).toArray(), model.forward(ids: long).toArray()), 1e-5, "\(name) 18 tokens")
    }

    /// Mixture of experts: each layer's experts stacked into llama.cpp's
    /// ffn_{gate,up,down}_exps [experts, out, in] beside the router
    /// (ffn_gate_inp, kept f32), Mixtral as llama.cpp's llama with experts
    /// (q/k permuted), Qwen3-MoE as qwen3moe; read back (as f32, and as the
    /// file's own blocks, each expert's rows in place) to base+adapter's logits.
    func testMoEExportsReadBackExactly() throws {
        for (name, arch, sparseLayer) in [("qwen3_moe", "qwen3moe", 0), ("mixtral", "llama", 1)] {
            let base = TestPaths.fixtures.appendingPathComponent("tiny/\(name)").path
            let adapter = Self.trainingFixtures.appendingPathComponent("tiny_\(name)/initial_adapter").path
            let ref = try reference(base, adapter)
            let out = temp("\(name).gguf")
            try GGUFExporter.export(modelPath: base, adapter: adapter, to: out, type: .f32)
            let file = try GGUFFile(path: out)
            XCTAssertEqual(file.architecture, arch)
            XCTAssertEqual(file.tensor(named: "blk.\(sparseLayer).ffn_gate_exps.weight")?.shape, [4, 32, 64], name)
            XCTAssertEqual(file.tensor(named: "blk.\(sparseLayer).ffn_down_exps.weight")?.shape, [4, 64, 32], name)
            XCTAssertEqual(file.tensor(named: "blk.\(sparseLayer).ffn_gate_inp.weight")?.shape, [4, 64], name)
            let config = try ModelConfig.fromGGUF(file)
            XCTAssertEqual(config, try ModelConfig.fromHF(path: base + "/config.json").withoutTokens(), name)
            let weights = GGUFWeights(file: file, config: config)
            for (tensor, t) in ref.tensors {
                XCTAssertEqual(try XCTUnwrap(weights.load(tensor), tensor).toArray(), t.values, "\(name) \(tensor)")
            }
            for format in [BaseWeightFormat.f32, BaseWeightFormat(kind: .gguf)] {
                let (exported, _) = try ModelLoader.load(out, baseWeights: format)
                XCTAssertLessThan(maxRel(exported.forward(ids: ids).toArray(), ref.logits), 1e-5, "\(name) \(format.summary)")
            }
            let q8 = temp("\(name)-q8.gguf")
            try GGUFExporter.export(modelPath: base, adapter: adapter, to: q8, type: .q8_0)
            XCTAssertEqual(try GGUFFile(path: q8).tensor(named: "blk.\(sparseLayer).ffn_gate_inp.weight")?.type, .f32, "routers stay f32")
        }
    }

    func testF32AndF16ExportsReadBackExactly() throws {
        // qwen2 has q/k/v biases; mistral is written as llama.cpp's "llama" architecture.
        for (arch, adapter) in [("llama", "tiny_llama"), ("qwen3", "tiny_qwen3"), ("qwen2", nil), ("mistral", nil)] {
            let base = TestPaths.fixtures.appendingPathComponent("tiny/\(arch)").path
            let adapterDir = adapter.map { Self.trainingFixtures.appendingPathComponent("\($0)/initial_adapter").path }
            let ref = try reference(base, adapterDir)
            for type in [GGUFFileType.f32, .f16] {
                let out = temp("\(arch).gguf")
                try GGUFExporter.export(modelPath: base, adapter: adapterDir, to: out, type: type)
                let file = try GGUFFile(path: out)
                XCTAssertEqual(file.architecture, arch == "mistral" ? "llama" : arch)
                var expectedConfig = try ModelConfig.fromHF(path: base + "/config.json").withoutTokens()
                if arch == "mistral" {  // llama.cpp's llama architecture has no sliding window (the 8 test ids fit in it)
                    expectedConfig.architecture = .llama
                    expectedConfig.slidingWindow = nil
                }
                XCTAssertEqual(try ModelConfig.fromGGUF(file), expectedConfig, "\(arch) config round trip")
                // Every weight, read back through the GGUF loader (names mapped, q/k un-permuted), is
                // exactly the merged f32 value, or its f16 rounding.
                let weights = GGUFWeights(file: file, config: try ModelConfig.fromGGUF(file))
                for (name, t) in ref.tensors {
                    let got = try XCTUnwrap(weights.load(name), name).toArray()
                    let want = (type == .f32 || t.shape.count == 1) ? t.values : t.values.map { Float(Float16($0)) }
                    XCTAssertEqual(got, want, "\(arch) \(type) \(name)")
                }
                if arch == "llama" || arch == "mistral" {
                    // The stored attn_q rows are llama.cpp's permutation of the HF rows.
                    let raw = try file.dequantize(file.tensor(named: "blk.0.attn_q.weight")!)
                    XCTAssertNotEqual(raw, ref.tensors["model.layers.0.self_attn.q_proj.weight"]!.values.map { type == .f32 ? $0 : Float(Float16($0)) })
                }
                let (m, _) = try ModelLoader.load(out)
                let tol: Float = type == .f32 ? 1e-5 : 2e-2
                XCTAssertLessThan(maxRel(m.forward(ids: ids).toArray(), ref.logits), tol, "\(arch) \(type) logits vs base+adapter")
            }
        }
    }

    func testQ8_0Q4_0AndQ4_1ExportsStayWithinQuantizationError() throws {
        let base = TestPaths.fixtures.appendingPathComponent("tiny/llama").path
        let adapterDir = Self.trainingFixtures.appendingPathComponent("tiny_llama/initial_adapter").path
        let ref = try reference(base, adapterDir)
        for type in [GGUFFileType.q8_0, .q4_0, .q4_1] {
            let out = temp("q.gguf")
            try GGUFExporter.export(modelPath: base, adapter: adapterDir, to: out, type: type)
            let file = try GGUFFile(path: out)
            XCTAssertEqual(file.tensor(named: "blk.0.ffn_up.weight")?.type, type.defaultType)
            XCTAssertEqual(file.tensor(named: "blk.0.attn_norm.weight")?.type, .f32)
            let weights = GGUFWeights(file: file, config: try ModelConfig.fromGGUF(file))
            for name in ["model.layers.0.mlp.up_proj.weight", "model.layers.1.self_attn.k_proj.weight"] {
                let want = ref.tensors[name]!.values
                let got = try weights.load(name)!.toArray()
                // Per 32-block, with d the block scale (stored as f16, relative error ≤ 2⁻¹¹) and
                // |q| ≤ 127 (Q8_0) or 8 (Q4_0): Q8_0 rounds to half a step, |x − q·d'| ≤ d/2 + 127·d·2⁻¹¹,
                // d = max|x|/127; Q4_0 can clamp the value opposite the extreme by a full step,
                // |x − q·d'| ≤ d + 8·d·2⁻¹¹, d = max|x|/8.
                // Q4_1: d = (max − min)/15 ≤ 2·max|x|/15, codes round to half a step, plus the f16
                // rounding of d (times a code ≤ 15) and of the minimum m (|m| ≤ max|x|).
                let factor: Float = type == .q8_0 ? (0.5 + 127.0 / 2048) / 127
                    : type == .q4_0 ? (1 + 8.0 / 2048) / 8 : 2.0 / 15 * (0.5 + 15.0 / 2048) + 1.0 / 2048
                var worst: Float = 0
                for b in 0 ..< want.count / 32 {
                    let blk = want[b * 32 ..< b * 32 + 32], amax = blk.map { abs($0) }.max()!
                    for j in blk.indices {
                        let e = abs(got[j] - want[j])
                        worst = max(worst, e / max(amax, 1e-30))
                        XCTAssertLessThanOrEqual(e, amax * factor * 1.0001 + 1e-9, "\(type) \(name)[\(j)]")
                    }
                }
                XCTAssertGreaterThan(worst, 0, "quantization is lossy")
            }
            let (m, _) = try ModelLoader.load(out)
            XCTAssertLessThan(maxRel(m.forward(ids: ids).toArray(), ref.logits), type == .q8_0 ? 0.05 : 0.5, "\(type) logits")
        }
    }

    /// The `gguf` package's reading of the same export, committed as a fixture.
    func testGGUFPackageReadsEveryKeyAsWritten() throws {
        let parent = temp("fx")
        let dir = parent + "/tinytok"
        let fm = FileManager.default
        try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for src in [TestPaths.fixtures.appendingPathComponent("tiny/llama"),
                    TestPaths.repoRoot.appendingPathComponent("Tests/LoftTokenizersTests/Fixtures/tokenizers/tiny-bytelevel")] {
            for f in try fm.contentsOfDirectory(atPath: src.path) { try fm.copyItem(atPath: src.path + "/" + f, toPath: dir + "/" + f) }
        }
        let out = dir + ".gguf"
        addTeardownBlock { try? fm.removeItem(atPath: out) }
        try GGUFExporter.export(modelPath: dir, adapter: Self.trainingFixtures.appendingPathComponent("tiny_llama/initial_adapter").path,
                                to: out, type: .q8_0)
        let fixture = try JSONSerialization.jsonObject(with: Data(contentsOf: TestPaths.fixtures.appendingPathComponent("export/tiny_llama_q8_0.json"))) as! [String: Any]
        let file = try GGUFFile(path: out)
        XCTAssertEqual(file.metadataKeys, fixture["key_order"] as? [String])
        let keys = fixture["keys"] as! [String: [String: Any]]
        for k in file.metadataKeys {
            let want = try XCTUnwrap(keys[k], k)
            let v = file.metadata[k]!
            XCTAssertEqual(Self.typeName(v), want["type"] as? String, k)
            if let items = v.array {
                XCTAssertEqual(items.count, want["count"] as? Int, k)
                XCTAssertEqual(items.first.map(Self.typeName), want["element_type"] as? String, k)
                let head = (want["head"] as! [Any]).map { "\($0)" }, tail = (want["tail"] as! [Any]).map { "\($0)" }
                XCTAssertEqual(items.prefix(5).map(Self.plain), head, k)
                XCTAssertEqual(items.suffix(3).map(Self.plain), tail, k)
            } else if let d = v.double, case .float32 = v {
                XCTAssertEqual(d, (want["value"] as! NSNumber).doubleValue, k)
            } else {
                XCTAssertEqual(Self.plain(v), "\(want["value"]!)", k)
            }
        }
        let tensors = fixture["tensors"] as! [String: [String: Any]]
        XCTAssertEqual(Set(file.tensors.map(\.name)), Set(tensors.keys))
        for t in file.tensors {
            let want = tensors[t.name]!
            XCTAssertEqual(t.shape, want["shape"] as? [Int], t.name)
            XCTAssertEqual(t.type.description, want["type"] as? String, t.name)
            let values = try file.dequantize(t).map(Double.init)
            let sum = values.reduce(0, +), sumsq = values.map { $0 * $0 }.reduce(0, +)
            XCTAssertEqual(sum, (want["sum"] as! NSNumber).doubleValue, accuracy: 1e-9 * max(1, sumsq), t.name)
            XCTAssertEqual(sumsq, (want["sumsq"] as! NSNumber).doubleValue, accuracy: 1e-9 * max(1, sumsq), t.name)
            for (g, w) in zip(values.prefix(4), (want["head"] as! [NSNumber]).map(\.doubleValue)) {
                XCTAssertEqual(g, w, accuracy: 1e-14 * max(1, abs(w)), t.name)  // JSON parsing may be off by an ulp
            }
        }
        // The tokenizer read back from the GGUF encodes as the tokenizer.json it came from. (This
        // tokenizer has ByteLevel add_prefix_space, which llama.cpp's gpt2 model does not do, so
        // the texts start with a space, where it makes no difference.)
        let fromGGUF = try Tokenizer.load(source: out), fromJSON = try Tokenizer.load(source: dir + "/tokenizer.json")
        XCTAssertEqual(fromGGUF.vocabularySize, fromJSON.vocabularySize)
        XCTAssertEqual(fromGGUF.bosTokenID, fromJSON.bosTokenID)
        XCTAssertEqual(fromGGUF.eosTokenID, fromJSON.eosTokenID)
        XCTAssertEqual(fromGGUF.chatTemplate, fromJSON.chatTemplate)
        for text in [" Hello world", "  spaces\tand\nnewlines 123", " ünïcödé ✓", " the quick brown fox"] {
            XCTAssertEqual(fromGGUF.encode(text, addSpecialTokens: false), fromJSON.encode(text, addSpecialTokens: false), text)
        }
    }

    func testRefusesExistingOutput() throws {
        let out = temp("exists.gguf")
        try Data("x".utf8).write(to: URL(fileURLWithPath: out))
        let base = TestPaths.fixtures.appendingPathComponent("tiny/llama").path
        XCTAssertThrowsError(try GGUFExporter.export(modelPath: base, adapter: nil, to: out, type: .f16)) {
            XCTAssertTrue("\($0)".contains("--overwrite"), "\($0)")
        }
    }

    static func typeName(_ v: GGUFValue) -> String {
        switch v {
        case .uint8: return "UINT8"
        case .int8: return "INT8"
        case .uint16: return "UINT16"
        case .int16: return "INT16"
        case .uint32: return "UINT32"
        case .int32: return "INT32"
        case .uint64: return "UINT64"
        case .int64: return "INT64"
        case .float32: return "FLOAT32"
        case .float64: return "FLOAT64"
        case .bool: return "BOOL"
        case .string: return "STRING"
        case .array: return "ARRAY"
        }
    }

    static func plain(_ v: GGUFValue) -> String {
        switch v {
        case .string(let s): return s
        case .bool(let b): return b ? "1" : "0"  // JSONSerialization reads true/false as NSNumber 1/0
        default: return v.int.map(String.init) ?? "\(v.double ?? .nan)"
        }
    }
}

extension ModelConfig {
    /// GGUF files carry no bos/eos in the model config when there is no tokenizer.
    func withoutTokens() -> ModelConfig {
        var c = self
        c.bosTokenID = nil
        c.eosTokenIDs = []
        c.rmsNormEps = Double(Float(rmsNormEps))  // GGUF stores these as float32, as llama.cpp does
        c.ropeTheta = Double(Float(ropeTheta))
        return c
    }
}
