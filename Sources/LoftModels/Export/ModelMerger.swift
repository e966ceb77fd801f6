import Foundation
import LoftFormats
import LoftTensors

/// The element type a merged checkpoint is written in.
public enum MergeDType: String, Sendable, CaseIterable {
    case bf16, fp16, fp32

    var safetensors: SafetensorsDType {
        switch self {
        case .bf16: return .bf16
        case .fp16: return .f16
        case .fp32: return .f32
        }
    }

    /// config.json's `torch_dtype` / `dtype` spelling.
    var torchName: String {
        switch self {
        case .bf16: return "bfloat16"
        case .fp16: return "float16"
        case .fp32: return "float32"
        }
    }

    init?(torchName: String) {
        switch torchName {
        case "bfloat16": self = .bf16
        case "float16": self = .fp16
        case "float32": self = .fp32
        default: return nil
        }
    }
}

/// One weight of a model with every attached LoRA folded in, in Hugging Face
/// naming and PyTorch's row-major layout.
public struct MergedTensor {
    public let name: String
    public let shape: [Int]
    public let values: [Float]
}

/// Folds LoRA adapters into the base weights (W' = W + scale·B·A, in fp32,
/// onto exactly the weights the model holds — for a GGUF base the dequantized
/// ones) and writes a Hugging Face directory that transformers loads.
public enum ModelMerger {
    public struct Options {
        /// nil: the source's dtype (config.json's torch_dtype; fp32 for a GGUF source).
        public var dtype: MergeDType?
        public var overwrite: Bool
        /// Shards are cut once they would pass this many bytes (transformers' default is 5 GB; Loft uses 2 GB).
        public var maxShardBytes: Int

        public init(dtype: MergeDType? = nil, overwrite: Bool = false, maxShardBytes: Int = 2_000_000_000) {
            self.dtype = dtype
            self.overwrite = overwrite
            self.maxShardBytes = maxShardBytes
        }
    }

    /// What `write` produced.
    public struct Report {
        public let directory: String
        public let dtype: MergeDType
        public let shards: [String]
        public let mergedProjections: Int
        public let tensors: Int
        /// Tokenizer files written or copied, and a note on what could not be.
        public let tokenizerFiles: [String]
        public internal(set) var notes: [String]
    }

    /// W + scale·B·A for one projection, in fp32 (W [out, in], A [r, in], B [out, r]).
    public static func merge(weight: [Float], out: Int, in inFeatures: Int, a: [Float], b: [Float], rank: Int,
                             scale: Float) -> [Float] {
        var w = weight
        w.withUnsafeMutableBufferPointer { wp in
            for o in 0 ..< out {
                let row = wp.baseAddress! + o * inFeatures
                for k in 0 ..< rank {
                    let c = scale * b[o * rank + k]
                    if c == 0 { continue }
                    a.withUnsafeBufferPointer { ap in
                        let arow = ap.baseAddress! + k * inFeatures
                        for j in 0 ..< inFeatures { row[j] += c * arow[j] }
                    }
                }
            }
        }
        return w
    }

    /// The L2 norm of each row of a row-major matrix, in double.
    public static func rowNorms(_ w: [Float], columns: Int) -> [Float] {
        stride(from: 0, to: w.count, by: columns).map { start in
            Float(w[start ..< start + columns].reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot())
        }
    }

    /// DoRA's merge: row o of W + s·B·A times m_o / ‖W + s·B·A‖_o.
    public static func scaleRows(_ w: [Float], by factors: [Float]) -> [Float] {
        let columns = w.count / max(1, factors.count)
        return w.enumerated().map { i, v in v * factors[i / columns] }
    }

    /// Every weight of the model with its attached adapters merged, in the
    /// order a Hugging Face checkpoint lists them. Throws on inf or NaN.
    public static func mergedTensors(_ model: LlamaModel, source: String = "model") throws -> (tensors: [MergedTensor], merged: Int) {
        let bk = model.backend
        var out: [MergedTensor] = []
        var merged = 0
        func add(_ name: String, _ t: Tensor) throws {
            let values = bk.download(t)
            try checkFinite(values, name: name, source: source)
            out.append(MergedTensor(name: name, shape: t.shape, values: values))
        }
        try add("model.embed_tokens.weight", model.embedding)
        for (i, layer) in model.layers.enumerated() {
            let p = "model.layers.\(i)."
            try add(p + "input_layernorm.weight", layer.attentionNorm)
            if let moe = layer.moe { try add(p + moe.routerName, moe.router) }
            for (path, linear) in layer.allProjections {
                var w = bk.download(linear.weight)
                // Frozen adapters first (an SFT adapter under a DPO one), in the order they were stacked.
                for f in linear.frozenAdapters {
                    w = merge(weight: w, out: linear.outFeatures, in: linear.inFeatures, a: bk.download(f.a),
                              b: bk.download(f.b), rank: f.rank, scale: f.scale)
                }
                if let lora = linear.lora {
                    w = merge(weight: w, out: linear.outFeatures, in: linear.inFeatures, a: bk.download(lora.a),
                              b: bk.download(lora.b), rank: lora.rank, scale: lora.scale)
                    if let magnitude = lora.magnitude {
                        w = scaleRows(w, by: zip(bk.download(magnitude), rowNorms(w, columns: linear.inFeatures)).map { $0 / $1 })
                    }
                    merged += 1
                }
                try checkFinite(w, name: p + path + ".weight", source: source)
                out.append(MergedTensor(name: p + path + ".weight", shape: linear.weight.shape, values: w))
                if let bias = linear.bias { try add(p + path + ".bias", bias) }
                if path == "self_attn.o_proj" {
                    // keep Hugging Face's order: q/k norms after the attention projections
                    if let n = layer.qNorm { try add(p + "self_attn.q_norm.weight", n) }
                    if let n = layer.kNorm { try add(p + "self_attn.k_norm.weight", n) }
                }
            }
            if let post = layer.postAttentionNorm, let postFF = layer.postFeedforwardNorm {
                // Gemma: post_attention_layernorm is the attention output's norm.
                try add(p + "post_attention_layernorm.weight", post)
                try add(p + "pre_feedforward_layernorm.weight", layer.mlpNorm)
                try add(p + "post_feedforward_layernorm.weight", postFF)
            } else {
                try add(p + "post_attention_layernorm.weight", layer.mlpNorm)
            }
        }
        try add("model.norm.weight", model.finalNorm)
        if model.lmHead.storage !== model.embedding.storage {
            try add("lm_head.weight", model.lmHead)
        }
        return (out, merged)
    }

    static func checkFinite(_ v: [Float], name: String, source: String) throws {
        if let i = v.firstIndex(where: { !$0.isFinite }) {
            throw FormatError(source, "merged weight \(name) has \(v[i]) at element \(i); the adapter or base is corrupt (check the adapter's training loss), nothing was written")
        }
    }

    /// Little-endian bytes of `values` in `dtype`; throws when fp16 overflows.
    public static func encode(_ values: [Float], as dtype: MergeDType, name: String) throws -> [UInt8] {
        switch dtype {
        case .fp32:
            return values.withUnsafeBytes { [UInt8]($0) }
        case .bf16:
            var bits = [UInt16](repeating: 0, count: values.count)
            for i in values.indices { bits[i] = BFloat16.fromFloat(values[i]) }
            return bits.withUnsafeBytes { [UInt8]($0) }
        case .fp16:
            var bits = [UInt16](repeating: 0, count: values.count)
            for i in values.indices {
                let h = Float16(values[i])
                if !h.isFinite {
                    throw FormatError(name, "value \(values[i]) overflows float16 (largest 65504); use --dtype bf16 or fp32")
                }
                bits[i] = h.bitPattern
            }
            return bits.withUnsafeBytes { [UInt8]($0) }
        }
    }

    /// Loads `modelPath` (HF directory or .gguf), attaches `adapter`, merges
    /// and writes a Hugging Face directory at `outDir`.
    @discardableResult
    public static func merge(modelPath: String, adapter: String?, to outDir: String,
                             options: Options = Options()) throws -> Report {
        try merge(modelPath: modelPath, adapters: adapter.map { [$0] } ?? [], to: outDir, options: options)
    }

    /// Several adapters applied in sequence (SFT, then a DPO adapter trained
    /// over it): each but the last is frozen under the next, as training saw them.
    @discardableResult
    public static func merge(modelPath: String, adapters: [String], to outDir: String,
                             options: Options = Options()) throws -> Report {
        try checkOutput(outDir, overwrite: options.overwrite)
        let adapter = adapters.last
        let (model, opened, baseNote) = try ModelLoader.load(modelPath, adapter: adapters.first)
        for (previous, next) in zip(adapters, adapters.dropFirst()) {
            try model.freezeAdapters()
            // An adapter trained over the one before it in the list gets it
            // from the list, not a second time from its loft_run.json.
            let recorded = try PEFTAdapter.baseAdapter(of: next)
            let given = recorded.map { URL(fileURLWithPath: $0).standardizedFileURL == URL(fileURLWithPath: previous).standardizedFileURL } ?? false
            if let recorded, !given {
                throw FormatError(next, "was trained over base_adapter \(recorded), not over \(previous) before it in the list; give --adapter \(next) alone (its base adapter comes with it) or put \(recorded) right before it")
            }
            try PEFTAdapter.load(next, into: model, stack: false)
        }
        var report = try write(model: model, opened: opened, sourcePath: modelPath, adapter: adapter, to: outDir, options: options)
        if let baseNote { report.notes.append(baseNote) }
        return report
    }

    /// Refuses a non-empty output directory unless overwriting.
    public static func checkOutput(_ path: String, overwrite: Bool) throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else { return }
        if !isDir.boolValue {
            throw FormatError(path, "exists and is a file; give a directory path for --out")
        }
        let items = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        if !items.isEmpty && !overwrite {
            throw FormatError(path, "is not empty; choose another --out or pass --overwrite to replace it")
        }
    }

    /// Writes the merged model as a Hugging Face directory.
    public static func write(model: LlamaModel, opened: ModelLoader.Opened, sourcePath: String, adapter: String?,
                             to outDir: String, options: Options = Options()) throws -> Report {
        try checkOutput(outDir, overwrite: options.overwrite)
        let fm = FileManager.default
        var sourceConfig: [String: Any]? = nil
        let sourceDir: String? = opened.gguf == nil ? sourcePath : nil
        if let sourceDir, let data = fm.contents(atPath: sourceDir + "/config.json") {
            sourceConfig = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
        }
        let sourceDType = ((sourceConfig?["torch_dtype"] ?? sourceConfig?["dtype"]) as? String).flatMap(MergeDType.init(torchName:))
        let dtype = options.dtype ?? sourceDType ?? .fp32

        let (tensors, mergedCount) = try mergedTensors(model, source: sourcePath)

        // Write into a sibling temporary directory, then move into place.
        let out = URL(fileURLWithPath: outDir).standardizedFileURL
        let tmp = out.deletingLastPathComponent().appendingPathComponent(".\(out.lastPathComponent).loft-tmp-\(getpid())")
        try? fm.removeItem(at: tmp)
        try fm.createDirectory(at: tmp, withIntermediateDirectories: true)
        var ok = false
        defer { if !ok { try? fm.removeItem(at: tmp) } }

        // Shards
        var groups: [[(MergedTensor, [UInt8])]] = [[]]
        var groupBytes = 0
        var total = 0
        for t in tensors {
            let bytes = try encode(t.values, as: dtype, name: t.name)
            if groupBytes > 0 && groupBytes + bytes.count > options.maxShardBytes {
                groups.append([])
                groupBytes = 0
            }
            groups[groups.count - 1].append((t, bytes))
            groupBytes += bytes.count
            total += bytes.count
        }
        var shardNames: [String] = []
        var weightMap: [String: String] = [:]
        for (gi, group) in groups.enumerated() {
            let name = groups.count == 1 ? "model.safetensors"
                : String(format: "model-%05d-of-%05d.safetensors", gi + 1, groups.count)
            var w = SafetensorsWriter(metadata: ["format": "pt"])
            for (t, bytes) in group {
                try w.add(name: t.name, dtype: dtype.safetensors, shape: t.shape, bytes: bytes)
                weightMap[t.name] = name
            }
            try w.write(to: tmp.appendingPathComponent(name).path)
            shardNames.append(name)
        }
        if groups.count > 1 {
            let index: [String: Any] = ["metadata": ["total_size": total], "weight_map": weightMap]
            try writeJSON(index, to: tmp.appendingPathComponent("model.safetensors.index.json"))
        }

        // config.json
        var config = sourceConfig ?? hfConfig(model.config)
        config["torch_dtype"] = dtype.torchName
        config["dtype"] = dtype.torchName
        config["tie_word_embeddings"] = model.lmHead.storage === model.embedding.storage
        // the merged weights are float: a bitsandbytes source's quantization no longer applies
        config.removeValue(forKey: "quantization_config")
        try writeJSON(config, to: tmp.appendingPathComponent("config.json"))

        // generation_config.json
        if let sourceDir, fm.fileExists(atPath: sourceDir + "/generation_config.json") {
            try fm.copyItem(atPath: sourceDir + "/generation_config.json", toPath: tmp.appendingPathComponent("generation_config.json").path)
        } else {
            var gen: [String: Any] = ["_from_model_config": true]
            if let b = model.config.bosTokenID { gen["bos_token_id"] = b }
            if model.config.eosTokenIDs.count == 1 { gen["eos_token_id"] = model.config.eosTokenIDs[0] }
            else if !model.config.eosTokenIDs.isEmpty { gen["eos_token_id"] = model.config.eosTokenIDs }
            try writeJSON(gen, to: tmp.appendingPathComponent("generation_config.json"))
        }

        // Tokenizer
        var tokenizerFiles: [String] = []
        var notes: [String] = []
        let tokenizerNames = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                              "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja", "chat_template.json"]
        if let sourceDir {
            for name in tokenizerNames where fm.fileExists(atPath: sourceDir + "/" + name) {
                try fm.copyItem(atPath: sourceDir + "/" + name, toPath: tmp.appendingPathComponent(name).path)
                tokenizerFiles.append(name)
            }
            if tokenizerFiles.isEmpty { notes.append("the source directory has no tokenizer files; none were written") }
        } else if let gguf = opened.gguf {
            let md = gguf.metadata
            let tokens = md["tokenizer.ggml.tokens"]?.strings ?? []
            func token(_ key: String) -> String? {
                guard let id = md["tokenizer.ggml.\(key)"]?.int, id >= 0, id < tokens.count else { return nil }
                return tokens[id]
            }
            var tc: [String: Any] = ["tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": false,
                                     "model_max_length": model.config.maxPositionEmbeddings]
            if let t = token("bos_token_id") { tc["bos_token"] = t }
            if let t = token("eos_token_id") { tc["eos_token"] = t }
            if let t = token("padding_token_id") { tc["pad_token"] = t }
            if let t = token("unknown_token_id") { tc["unk_token"] = t }
            if let t = md["tokenizer.chat_template"]?.string { tc["chat_template"] = t }
            if let b = md["tokenizer.ggml.add_bos_token"]?.bool { tc["add_bos_token"] = b }
            if let b = md["tokenizer.ggml.add_eos_token"]?.bool { tc["add_eos_token"] = b }
            let (tokJSON, reason) = try HFTokenizerWriter.tokenizerJSON(gguf)
            if let tokJSON {
                try tokJSON.write(to: tmp.appendingPathComponent("tokenizer.json"), options: .atomic)
                tokenizerFiles.append("tokenizer.json")
            } else {
                tc["tokenizer_class"] = NSNull()
                notes.append("no tokenizer.json was written (\(reason ?? "unsupported tokenizer")); load the tokenizer from the original model")
            }
            try writeJSON(tc, to: tmp.appendingPathComponent("tokenizer_config.json"))
            tokenizerFiles.append("tokenizer_config.json")
        }
        // The adapter's own template (what it was trained with) wins, as in `loft generate`.
        if let adapter {
            let jinja = adapter + "/chat_template.jinja"
            if let text = try? String(contentsOfFile: jinja, encoding: .utf8) {
                let dest = tmp.appendingPathComponent("tokenizer_config.json")
                var tc = (fm.contents(atPath: dest.path).flatMap { try? JSONSerialization.jsonObject(with: $0) } as? [String: Any]) ?? [:]
                tc["chat_template"] = text
                try writeJSON(tc, to: dest)
                if fm.fileExists(atPath: tmp.appendingPathComponent("chat_template.jinja").path) {
                    try fm.removeItem(at: tmp.appendingPathComponent("chat_template.jinja"))
                    try fm.copyItem(atPath: jinja, toPath: tmp.appendingPathComponent("chat_template.jinja").path)
                }
                if !tokenizerFiles.contains("tokenizer_config.json") { tokenizerFiles.append("tokenizer_config.json") }
                notes.append("chat template taken from the adapter (\(jinja))")
            }
        }

        if fm.fileExists(atPath: out.path) { try fm.removeItem(at: out) }
        try fm.moveItem(at: tmp, to: out)
        ok = true
        return Report(directory: out.path, dtype: dtype, shards: shardNames, mergedProjections: mergedCount,
                      tensors: tensors.count, tokenizerFiles: tokenizerFiles, notes: notes)
    }

    static func writeJSON(_ object: Any, to url: URL) throws {
        var out: [UInt8] = []
        appendJSON(object, indent: 0, to: &out)
        out.append(0x0A)
        try Data(out).write(to: url, options: .atomic)
    }

    /// Pretty JSON with sorted keys, like JSONSerialization's, except that a
    /// float stays a float: Foundation writes 30.0 as 30, and transformers'
    /// strict configs then refuse it (Gemma 2's final_logit_softcapping: "expected
    /// float, got int").
    static func appendJSON(_ value: Any, indent: Int, to out: inout [UInt8]) {
        func newline(_ level: Int) { out.append(0x0A); out += [UInt8](repeating: 0x20, count: 2 * level) }
        switch value {
        case is NSNull:
            out += Array("null".utf8)
        case let s as String:
            JSONWriter.quoted(s, into: &out)
        case let n as NSNumber:
            switch String(cString: n.objCType) {
            case "c", "B": out += Array((n.boolValue ? "true" : "false").utf8)
            case "d", "f":
                let d = n.doubleValue
                out += Array((d.isFinite ? "\(d)" : "null").utf8)
            default: out += Array("\(n.int64Value)".utf8)
            }
        case let a as [Any]:
            if a.isEmpty { out += Array("[]".utf8); return }
            out.append(UInt8(ascii: "["))
            for (i, v) in a.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                newline(indent + 1)
                appendJSON(v, indent: indent + 1, to: &out)
            }
            newline(indent)
            out.append(UInt8(ascii: "]"))
        case let o as [String: Any]:
            if o.isEmpty { out += Array("{}".utf8); return }
            out.append(UInt8(ascii: "{"))
            for (i, k) in o.keys.sorted().enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                newline(indent + 1)
                JSONWriter.quoted(k, into: &out)
                out += Array(": ".utf8)
                appendJSON(o[k]!, indent: indent + 1, to: &out)
            }
            newline(indent)
            out.append(UInt8(ascii: "}"))
        default:
            JSONWriter.quoted("\(value)", into: &out)
        }
    }

    /// A config.json for a model that came without one (a GGUF source).
    public static func hfConfig(_ c: ModelConfig) -> [String: Any] {
        let className: String
        switch c.architecture {
        case .llama: className = "LlamaForCausalLM"
        case .mistral: className = "MistralForCausalLM"
        case .qwen2: className = "Qwen2ForCausalLM"
        case .qwen3: className = "Qwen3ForCausalLM"
        case .gemma2, .gemma3: return gemmaHFConfig(c)
        case .phi3: className = "Phi3ForCausalLM"
        case .qwen3Moe: className = "Qwen3MoeForCausalLM"
        case .mixtral: className = "MixtralForCausalLM"
        }
        var j = commonConfig(c).merging([
            "architectures": [className],
            "model_type": c.architecture.rawValue,
            "hidden_act": "silu",
            "rope_theta": c.ropeTheta,
            "mlp_bias": false,
        ]) { $1 }
        var rope: [String: Any] = ["rope_theta": c.ropeTheta, "rope_type": "default"]
        switch c.ropeScaling {
        case .none: j["rope_scaling"] = NSNull()
        case .linear(let f):
            rope["rope_type"] = "linear"; rope["factor"] = f
            j["rope_scaling"] = ["rope_type": "linear", "factor": f]
        case .dynamic(let f, let o):
            rope["rope_type"] = "dynamic"; rope["factor"] = f; rope["original_max_position_embeddings"] = o
            j["rope_scaling"] = ["rope_type": "dynamic", "factor": f, "original_max_position_embeddings": o]
        case .llama3(let f, let lo, let hi, let o):
            let s: [String: Any] = ["rope_type": "llama3", "factor": f, "low_freq_factor": lo, "high_freq_factor": hi,
                                    "original_max_position_embeddings": o]
            j["rope_scaling"] = s
            rope = s.merging(["rope_theta": c.ropeTheta]) { a, _ in a }
        case .longRoPE(let short, let long, let o, let attention):
            // Phi-3 keeps the pretraining length at the top level; the
            // attention factor is written so that it never has to be re-derived.
            rope = ["rope_type": "longrope", "rope_theta": c.ropeTheta, "short_factor": short, "long_factor": long,
                    "attention_factor": attention, "original_max_position_embeddings": o]
            j["original_max_position_embeddings"] = o
            j["rope_scaling"] = nil
        }
        if c.architecture == .qwen3Moe {
            j["num_experts"] = c.experts
            j["num_experts_per_tok"] = c.expertsPerToken
            j["moe_intermediate_size"] = c.expertIntermediateSize
            j["norm_topk_prob"] = c.normalizeTopK
            j["decoder_sparse_step"] = 1
            j["mlp_only_layers"] = c.denseLayers.sorted()
            j["output_router_logits"] = false
        } else if c.architecture == .mixtral {
            j["num_local_experts"] = c.experts
            j["num_experts_per_tok"] = c.expertsPerToken
            j["router_jitter_noise"] = 0.0
            j["output_router_logits"] = false
        }
        if let r = c.rotaryDims {
            let factor = Double(r) / Double(c.headDim)
            rope["partial_rotary_factor"] = factor
            j["partial_rotary_factor"] = factor
        }
        j["rope_parameters"] = rope
        if let w = c.slidingWindow {
            j["sliding_window"] = w
            if ![.mistral, .phi3, .mixtral].contains(c.architecture) { j["use_sliding_window"] = true }
        } else if c.architecture != .llama {
            j["sliding_window"] = NSNull()
            if ![.phi3, .mixtral].contains(c.architecture) { j["use_sliding_window"] = false }
        }
        return j
    }

    /// The keys every family's config.json has alike: the shape, and the special tokens.
    static func commonConfig(_ c: ModelConfig) -> [String: Any] {
        var j: [String: Any] = [
            "vocab_size": c.vocabSize,
            "hidden_size": c.hiddenSize,
            "intermediate_size": c.intermediateSize,
            "num_hidden_layers": c.layers,
            "num_attention_heads": c.heads,
            "num_key_value_heads": c.kvHeads,
            "head_dim": c.headDim,
            "rms_norm_eps": c.rmsNormEps,
            "max_position_embeddings": c.maxPositionEmbeddings,
            "tie_word_embeddings": c.tieWordEmbeddings,
            "attention_bias": c.attentionBias,
            "attention_dropout": 0.0,
            "initializer_range": 0.02,
            "use_cache": true,
        ]
        if let b = c.bosTokenID { j["bos_token_id"] = b }
        if c.eosTokenIDs.count == 1 { j["eos_token_id"] = c.eosTokenIDs[0] }
        else if !c.eosTokenIDs.isEmpty { j["eos_token_id"] = c.eosTokenIDs }
        return j
    }

    /// Gemma 3's config.json (model_type gemma3_text), with the RoPE settings
    /// in both of transformers' spellings (rope_parameters per layer type, and
    /// rope_theta/rope_scaling/rope_local_base_freq for older versions), or
    /// Gemma 2's (one RoPE base, the soft-caps).
    static func gemmaHFConfig(_ c: ModelConfig) -> [String: Any] {
        var global: [String: Any] = ["rope_type": "default", "rope_theta": c.ropeTheta]
        var legacyScaling: Any = NSNull()
        if case .linear(let f) = c.ropeScaling {
            global["rope_type"] = "linear"; global["factor"] = f
            legacyScaling = ["rope_type": "linear", "factor": f]
        }
        let local = c.localRopeTheta ?? 10_000
        let scalar = 1 / Double(c.attentionScale ?? 1 / Float(c.headDim).squareRoot())
        var j = commonConfig(c).merging([
            "architectures": ["Gemma3ForCausalLM"],
            "model_type": "gemma3_text",
            "hidden_activation": "gelu_pytorch_tanh",
            "query_pre_attn_scalar": Int(exactly: (scalar * scalar).rounded()) ?? 256,
            "sliding_window": c.slidingWindow ?? 4096,
            "layer_types": (0 ..< c.layers).map { c.window(layer: $0) == nil ? "full_attention" : "sliding_attention" },
            "rope_parameters": ["full_attention": global,
                                "sliding_attention": ["rope_type": "default", "rope_theta": local] as [String: Any]],
            "rope_theta": c.ropeTheta,
            "rope_local_base_freq": local,
            "rope_scaling": legacyScaling,
            "final_logit_softcapping": c.finalLogitSoftcap.map { Double($0) as Any } ?? NSNull(),
            "attn_logit_softcapping": c.attentionSoftcap.map { Double($0) as Any } ?? NSNull(),
        ]) { $1 }
        if c.architecture == .gemma2 {
            j["architectures"] = ["Gemma2ForCausalLM"]
            j["model_type"] = "gemma2"
            j["rope_parameters"] = ["rope_type": "default", "rope_theta": c.ropeTheta] as [String: Any]
            for k in ["rope_local_base_freq", "rope_scaling"] { j[k] = nil }
        }
        return j
    }
}
