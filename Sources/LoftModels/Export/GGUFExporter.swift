import Foundation
import LoftFormats
import LoftTensors

/// Writes a model (with any attached LoRA merged in fp32) as a GGUF file that
/// llama.cpp loads: `{arch}.*` hyper-parameters, the tokenizer, llama.cpp's
/// tensor names and its q/k row permutation for Llama-architecture files.
public enum GGUFExporter {
    /// The file types `loft export gguf --quant` offers, by name.
    public static let quantTypes: [String: GGUFFileType] = Dictionary(uniqueKeysWithValues: GGUFFileType.allCases.map { ($0.rawValue, $0) })

    /// The GGUF architecture name: Mistral files use llama.cpp's "llama".
    public static func ggufArchitecture(_ a: Architecture) -> String {
        switch a {
        case .llama, .mistral, .mixtral: return "llama"
        case .qwen2: return "qwen2"
        case .qwen3: return "qwen3"
        case .gemma3: return "gemma3"
        case .gemma2: return "gemma2"
        case .phi3: return "phi3"
        case .qwen3Moe: return "qwen3moe"
        }
    }

    public struct Report {
        public let path: String
        public let type: GGUFFileType
        public let tensors: Int
        /// How many tensors of each type were written, e.g. ["Q4_K": 30, "Q5_0": 150, …].
        public let tensorTypes: [String: Int]
        public let mergedProjections: Int
        public let bytes: Int
        public internal(set) var notes: [String]
    }

    /// Loads `modelPath`, attaches `adapter` and writes the GGUF.
    @discardableResult
    public static func export(modelPath: String, adapter: String?, to path: String, type: GGUFFileType,
                              overwrite: Bool = false) throws -> Report {
        try checkOutputFile(path, overwrite: overwrite)
        let (model, opened, baseNote) = try ModelLoader.load(modelPath, adapter: adapter)
        var report = try export(model: model, opened: opened, sourcePath: modelPath, adapter: adapter, to: path, type: type)
        if let baseNote { report.notes.append(baseNote) }
        return report
    }

    public static func checkOutputFile(_ path: String, overwrite: Bool) throws {
        if FileManager.default.fileExists(atPath: path) && !overwrite {
            throw FormatError(path, "already exists; choose another --out or pass --overwrite")
        }
    }

    /// The hyper-parameters llama.cpp reads for the architecture.
    public static func modelMetadata(_ c: ModelConfig, name: String) throws -> [(String, GGUFValue)] {
        let arch = ggufArchitecture(c.architecture)
        var m: [(String, GGUFValue)] = [
            ("general.architecture", .string(arch)),
            ("general.type", .string("model")),
            ("general.name", .string(name)),
            ("\(arch).block_count", .uint32(UInt32(c.layers))),
            ("\(arch).context_length", .uint32(UInt32(c.maxPositionEmbeddings))),
            ("\(arch).embedding_length", .uint32(UInt32(c.hiddenSize))),
            ("\(arch).feed_forward_length", .uint32(UInt32(c.intermediateSize))),
            ("\(arch).attention.head_count", .uint32(UInt32(c.heads))),
            ("\(arch).attention.head_count_kv", .uint32(UInt32(c.kvHeads))),
            ("\(arch).rope.freq_base", .float32(Float(c.ropeTheta))),
            ("\(arch).attention.layer_norm_rms_epsilon", .float32(Float(c.rmsNormEps))),
            ("\(arch).vocab_size", .uint32(UInt32(c.vocabSize))),
            ("\(arch).rope.dimension_count", .uint32(UInt32(c.rotaryDimensions))),
        ]
        if c.headDim * c.heads != c.hiddenSize || [.qwen3, .qwen3Moe, .gemma2, .gemma3].contains(c.architecture) {
            m.append(("\(arch).attention.key_length", .uint32(UInt32(c.headDim))))
            m.append(("\(arch).attention.value_length", .uint32(UInt32(c.headDim))))
        }
        switch c.ropeScaling {
        case .none: break
        case .linear(let f):
            m.append(("\(arch).rope.scaling.type", .string("linear")))
            m.append(("\(arch).rope.scaling.factor", .float32(Float(f))))
        case .longRoPE(_, _, let original, let attentionFactor):
            // The factors themselves are the tensors rope_factors_short/long (`ropeFactorTensors`).
            m.append(("\(arch).rope.scaling.attn_factor", .float32(Float(attentionFactor))))
            m.append(("\(arch).rope.scaling.original_context_length", .uint32(UInt32(original))))
        case .dynamic, .llama3:
            throw FormatError(name, "GGUF export of \(c.ropeScaling) RoPE scaling is not supported yet; export a model with default or linear RoPE")
        }
        if let w = c.slidingWindow, [.mistral, .mixtral, .gemma2, .gemma3, .phi3].contains(c.architecture) {
            m.append(("\(arch).attention.sliding_window", .uint32(UInt32(w))))
        }
        if c.experts > 0 {
            m.append(("\(arch).expert_count", .uint32(UInt32(c.experts))))
            m.append(("\(arch).expert_used_count", .uint32(UInt32(c.expertsPerToken))))
            m.append(("\(arch).expert_weights_norm", .bool(c.normalizeTopK)))
            if c.architecture == .qwen3Moe {
                m.append(("\(arch).expert_feed_forward_length", .uint32(UInt32(c.expertIntermediateSize))))
            }
        }
        if let cap = c.attentionSoftcap { m.append(("\(arch).attn_logit_softcapping", .float32(cap))) }
        if let cap = c.finalLogitSoftcap { m.append(("\(arch).final_logit_softcapping", .float32(cap))) }
        return m
    }

    /// A tensor as the GGUF file holds it: llama.cpp's name, the Hugging Face
    /// name it came from (the first expert's for a stacked one), its shape.
    struct GGUFTensor {
        let gguf: String, name: String, shape: [Int], values: [Float]
    }

    /// The merged tensors under llama.cpp's names, with each layer's experts
    /// stacked into one [experts, out, in] tensor per projection (ffn_*_exps).
    static func stackExperts(_ tensors: [MergedTensor], architecture: Architecture, experts: Int,
                             source: String) throws -> [GGUFTensor] {
        var out: [GGUFTensor] = []
        var stacks: [String: (index: Int, parts: [Int: MergedTensor])] = [:]
        for t in tensors {
            if let slice = GGUFWeights.expertSlice(t.name) {
                if stacks[slice.name] == nil {
                    stacks[slice.name] = (out.count, [:])
                    out.append(GGUFTensor(gguf: slice.name, name: t.name, shape: [], values: []))  // filled below
                }
                stacks[slice.name]!.parts[slice.expert] = t
                continue
            }
            guard let g = GGUFWeights.ggufName(t.name, architecture: architecture) else {
                throw FormatError(source, "no GGUF name for weight \(t.name)")
            }
            out.append(GGUFTensor(gguf: g, name: t.name, shape: t.shape, values: t.values))
        }
        for (name, stack) in stacks {
            guard stack.parts.count == experts, let first = stack.parts[0] else {
                throw FormatError(source, "\(name): \(stack.parts.count) experts of \(experts)")
            }
            let values = (0 ..< experts).flatMap { stack.parts[$0]!.values }
            out[stack.index] = GGUFTensor(gguf: name, name: first.name, shape: [experts] + first.shape, values: values)
        }
        return out
    }

    /// LongRoPE's factors as llama.cpp keeps them: F32 tensors beside the weights.
    static func ropeFactorTensors(_ c: ModelConfig) -> [(String, [Float])] {
        guard case .longRoPE(let short, let long, _, _) = c.ropeScaling else { return [] }
        return [("rope_factors_long.weight", long.map(Float.init)), ("rope_factors_short.weight", short.map(Float.init))]
    }

    /// Writes the model to `path` as `type` (2-D weights as `type` picks per
    /// tensor; norms and biases stay F32).
    public static func export(model: LlamaModel, opened: ModelLoader.Opened, sourcePath: String, adapter: String?,
                              to path: String, type: GGUFFileType) throws -> Report {
        let c = model.config
        var notes: [String] = []
        let name = URL(fileURLWithPath: sourcePath).deletingPathExtension().lastPathComponent
        var w = GGUFWriter()
        for (k, v) in try modelMetadata(c, name: name) { w.set(k, v) }
        w.set("general.file_type", .uint32(type.llamaFileType))
        if type.isQuantized { w.set("general.quantization_version", .uint32(2)) }  // GGML_QNT_VERSION
        if let window = c.slidingWindow, c.layerTypes.isEmpty, c.architecture != .phi3 {
            notes.append("the model uses sliding-window attention (\(window) tokens); llama.cpp's \(ggufArchitecture(c.architecture)) architecture attends to the whole context")
        }
        let tok = try tokenizerMetadata(opened: opened, sourcePath: sourcePath, adapter: adapter)
        for (k, v) in tok.entries { w.set(k, v) }
        notes += tok.notes

        let (merged2D, merged) = try ModelMerger.mergedTensors(model, source: sourcePath)
        let tensors = try stackExperts(merged2D, architecture: c.architecture, experts: c.experts, source: sourcePath)
        if c.experts > 0 && !c.denseLayers.isEmpty {
            notes.append("layers \(c.denseLayers.sorted()) keep a dense MLP; llama.cpp's \(ggufArchitecture(c.architecture)) expects every layer sparse")
        }
        let permute = [.llama, .mistral, .mixtral].contains(c.architecture)
        let tied = !tensors.contains { $0.gguf == "output.weight" }
        var counts: [String: Int] = [:]
        var fallbacks = 0
        for t in tensors {
            let g = t.gguf
            var values = t.values
            // llama.cpp's Gemma files store every norm as 1 + w (GGUFWeights subtracts it on load).
            if c.normWeightOffset != 0 && t.name.hasSuffix("norm.weight") { values = values.map { $0 + c.normWeightOffset } }
            if permute && (t.name.hasSuffix("q_proj.weight") || t.name.hasSuffix("k_proj.weight")
                           || t.name.hasSuffix("q_proj.bias") || t.name.hasSuffix("k_proj.bias")) {
                let heads = t.name.contains("q_proj") ? c.heads : c.kvHeads
                let cols = t.shape.count > 1 ? t.shape[1] : 1
                try values.withUnsafeMutableBufferPointer {
                    try permuteLlamaQK($0.baseAddress!, rows: t.shape[0], cols: cols, heads: heads)
                }
            }
            let row = t.shape.last!
            let (tt, fallback) = type.tensorType(name: g, dimensions: t.shape.count, rowLength: row,
                                                 layers: c.layers, tiedEmbeddings: tied)
            if let fallback {
                fallbacks += 1
                if fallbacks <= 3 { notes.append(fallback) }
            }
            counts[tt.description, default: 0] += 1
            let data = try GGMLQuantizer.encode(values, rowLength: row, as: tt, name: g)
            try w.addTensor(name: g, shape: t.shape, type: tt, data: data)
        }
        if fallbacks > 3 { notes.append("\(fallbacks) of \(tensors.count) tensors needed a fallback type (rows not whole blocks)") }
        for (g, values) in ropeFactorTensors(c) {
            try w.addTensor(name: g, shape: [values.count], type: .f32,
                            data: try GGMLQuantizer.encode(values, rowLength: values.count, as: .f32, name: g))
        }
        try w.write(to: path)
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        return Report(path: path, type: type, tensors: tensors.count, tensorTypes: counts, mergedProjections: merged,
                      bytes: size, notes: notes)
    }

    /// The `tokenizer.*` metadata: copied from a GGUF source, or built from a
    /// Hugging Face directory's tokenizer.json (byte-level BPE). An adapter's
    /// chat_template.jinja replaces the chat template.
    public static func tokenizerMetadata(opened: ModelLoader.Opened, sourcePath: String,
                                         adapter: String?) throws -> (entries: [(String, GGUFValue)], notes: [String]) {
        var entries: [(String, GGUFValue)] = []
        var notes: [String] = []
        if let g = opened.gguf {
            for k in g.metadataKeys where k.hasPrefix("tokenizer.") { entries.append((k, g.metadata[k]!)) }
            if entries.isEmpty { notes.append("the source GGUF has no tokenizer; llama.cpp will not load the result") }
        } else {
            let dir = sourcePath
            if FileManager.default.fileExists(atPath: dir + "/tokenizer.json") {
                entries = try hfTokenizerMetadata(directory: dir)
            } else {
                notes.append("\(dir) has no tokenizer.json; the GGUF carries no tokenizer, so llama.cpp will not load it")
            }
        }
        if let adapter, let text = try? String(contentsOfFile: adapter + "/chat_template.jinja", encoding: .utf8) {
            entries.removeAll { $0.0 == "tokenizer.chat_template" }
            entries.append(("tokenizer.chat_template", .string(text)))
            notes.append("chat template taken from the adapter")
        }
        return (entries, notes)
    }

    /// Byte-level BPE from tokenizer.json (+ tokenizer_config.json) as
    /// llama.cpp's "gpt2" tokenizer model.
    public static func hfTokenizerMetadata(directory: String) throws -> [(String, GGUFValue)] {
        let path = directory + "/tokenizer.json"
        guard let data = FileManager.default.contents(atPath: path),
              let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw FormatError(path, "is not a JSON object")
        }
        guard let model = json["model"] as? [String: Any], model["type"] as? String == "BPE",
              let vocab = model["vocab"] as? [String: Any] else {
            throw FormatError(path, "only BPE tokenizers can be exported to GGUF; export from the model's .gguf instead")
        }
        let text = String(decoding: data, as: UTF8.self)
        guard text.contains("\"ByteLevel\"") else {
            throw FormatError(path, "only byte-level BPE (GPT-2 style) tokenizers are exported from tokenizer.json; export from the model's .gguf instead")
        }
        var byID: [Int: String] = [:]
        for (tok, id) in vocab { if let i = (id as? NSNumber)?.intValue { byID[i] = tok } }
        var types: [Int: Int32] = [:]
        var specialNames: [String: Int] = [:]
        for case let a as [String: Any] in json["added_tokens"] as? [Any] ?? [] {
            guard let id = (a["id"] as? NSNumber)?.intValue, let content = a["content"] as? String else { continue }
            byID[id] = content
            let special = a["special"] as? Bool ?? false
            types[id] = special ? 3 : 4  // CONTROL : USER_DEFINED
            specialNames[content] = id
        }
        let count = (byID.keys.max() ?? -1) + 1
        var tokens: [GGUFValue] = [], tokenTypes: [GGUFValue] = []
        for i in 0 ..< count {
            if let t = byID[i] { tokens.append(.string(t)); tokenTypes.append(.int32(types[i] ?? 1)) }
            else { tokens.append(.string("[PAD\(i)]")); tokenTypes.append(.int32(5)) }  // UNUSED
        }
        var merges: [GGUFValue] = []
        for m in model["merges"] as? [Any] ?? [] {
            if let s = m as? String { merges.append(.string(s)) }
            else if let pair = m as? [String], pair.count == 2 { merges.append(.string(pair[0] + " " + pair[1])) }
        }
        // llama.cpp names pre-tokenizers by the regex they use; recognise the common ones.
        let pre: String
        if text.contains("individual_digits\":true") || text.contains("individual_digits\": true") { pre = "smollm" }
        else if text.contains("\\\\p{N}{1,3}") || text.contains("\\p{N}{1,3}") { pre = "llama-bpe" }
        else if text.contains("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}|") { pre = "qwen2" }
        else { pre = "gpt2" }
        var out: [(String, GGUFValue)] = [
            ("tokenizer.ggml.model", .string("gpt2")),
            ("tokenizer.ggml.pre", .string(pre)),
            ("tokenizer.ggml.tokens", .array(tokens)),
            ("tokenizer.ggml.token_type", .array(tokenTypes)),
            ("tokenizer.ggml.merges", .array(merges)),
        ]
        var tc: [String: Any] = [:]
        if let d = FileManager.default.contents(atPath: directory + "/tokenizer_config.json") {
            tc = ((try? JSONSerialization.jsonObject(with: d)) as? [String: Any]) ?? [:]
        }
        func tokenName(_ key: String) -> String? {
            if let s = tc[key] as? String { return s }
            return (tc[key] as? [String: Any])?["content"] as? String
        }
        func id(of name: String?) -> Int? {
            guard let name else { return nil }
            return specialNames[name] ?? (vocab[name] as? NSNumber)?.intValue
        }
        if let b = id(of: tokenName("bos_token")) { out.append(("tokenizer.ggml.bos_token_id", .uint32(UInt32(b)))) }
        if let e = id(of: tokenName("eos_token")) { out.append(("tokenizer.ggml.eos_token_id", .uint32(UInt32(e)))) }
        if let u = id(of: tokenName("unk_token")) { out.append(("tokenizer.ggml.unknown_token_id", .uint32(UInt32(u)))) }
        if let p = id(of: tokenName("pad_token")) { out.append(("tokenizer.ggml.padding_token_id", .uint32(UInt32(p)))) }
        // The post-processor decides whether BOS is prepended (TemplateProcessing with a BOS).
        var addBOS = tc["add_bos_token"] as? Bool ?? false
        if tc["add_bos_token"] == nil, let post = json["post_processor"] as? [String: Any],
           let single = post["single"] as? [Any], let first = single.first as? [String: Any], first["SpecialToken"] != nil {
            addBOS = true
        }
        out.append(("tokenizer.ggml.add_bos_token", .bool(addBOS)))
        out.append(("tokenizer.ggml.add_eos_token", .bool(tc["add_eos_token"] as? Bool ?? false)))
        var template = tc["chat_template"] as? String
        if template == nil { template = try? String(contentsOfFile: directory + "/chat_template.jinja", encoding: .utf8) }
        if let template { out.append(("tokenizer.chat_template", .string(template))) }
        return out
    }
}
