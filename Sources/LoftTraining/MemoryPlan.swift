import Foundation
import LoftFormats
import LoftModels
import LoftTensors

/// How the frozen base weights are held in memory.
public enum BaseWeightStorage: Sendable, Equatable {
    /// Loft's default: every weight f32 (GGUF blocks dequantized on load,
    /// f32 safetensors used in place in the memory map).
    case f32
    /// `bf16: true`: every weight bf16.
    case bf16
    /// `load_in_8bit`: projections int8 with an f32 scale per row.
    case int8
    /// `load_in_4bit` (NF4 or FP4): projections 4-bit in blocks of 64 with an
    /// f32 absmax each, or with `bnb_4bit_use_double_quant` an 8-bit absmax
    /// plus an f32 scale per 256 absmaxes.
    case nf4(doubleQuant: Bool)
    /// `keep_gguf_quantization`: projections stay in the GGUF file's block
    /// format (Q4_1 is 20 bytes per 32 weights, Q8_0 34, Q4_K 144 per 256…).
    case ggufKept

    public var label: String {
        switch self {
        case .f32: return "f32"
        case .bf16: return "bf16"
        case .int8: return "int8 + row scales"
        case .nf4(let dq): return dq ? "4-bit + double-quantized absmax" : "4-bit + absmax"
        case .ggufKept: return "GGUF blocks as stored"
        }
    }

    /// The storage a config asks for (`TrainConfig.baseWeights`, from
    /// load_in_4bit / load_in_8bit / bf16 / keep_gguf_quantization).
    public static func from(_ config: TrainConfig) -> BaseWeightStorage { from(config.baseWeights) }

    public static func from(_ format: BaseWeightFormat) -> BaseWeightStorage {
        switch format.kind {
        case .f32: return .f32
        case .bf16: return .bf16
        case .int8: return .int8
        case .nf4, .fp4: return .nf4(doubleQuant: format.doubleQuant)
        case .gguf: return .ggufKept
        }
    }

    /// Bytes per parameter of the weights that are not projections
    /// (embedding, untied LM head, norms): every storage leaves them f32
    /// (the loader compacts projections only).
    var nonProjectionBytesPerParameter: Double { 4 }
}

/// Where the device memory goes.
public enum MemoryTarget: Sendable, Equatable {
    /// This machine's RAM, as Loft's CPU backend uses it (f32 compute).
    case cpu
    /// A GPU of this many bytes, planned for bf16 activations and a CUDA context.
    case gpu(name: String, bytes: Int)

    /// GPUs people fine-tune on, with their memory.
    public static let knownGPUs: [(name: String, bytes: Int)] = [
        ("T4 16GB", 16 << 30), ("L4 24GB", 24 << 30), ("A10 24GB", 24 << 30), ("RTX 4090 24GB", 24 << 30),
        ("A100 40GB", 40 << 30), ("A100 80GB", 80 << 30), ("H100 80GB", 80 << 30), ("H200 141GB", 141 << 30),
    ]
}

/// What the planner needs to know about the model's files.
public struct ModelSourceInfo: Sendable {
    /// Bytes of the weight files.
    public var fileBytes: Int
    /// f32 safetensors: the weights are the mapped file itself, not a copy.
    public var weightsBorrowedFromMap: Bool
    /// Bytes the projection matrices take in the file (GGUF blocks).
    public var projectionFileBytes: Int
    /// Tokens in the tokenizer (its tables are resident for the whole run).
    public var vocabularySize: Int

    public init(fileBytes: Int, weightsBorrowedFromMap: Bool, projectionFileBytes: Int, vocabularySize: Int) {
        self.fileBytes = fileBytes
        self.weightsBorrowedFromMap = weightsBorrowedFromMap
        self.projectionFileBytes = projectionFileBytes
        self.vocabularySize = vocabularySize
    }

    /// Reads the file headers only.
    public static func inspect(_ path: String, config: ModelConfig) throws -> ModelSourceInfo {
        let projectionNames = ["attn_q", "attn_k", "attn_v", "attn_qkv", "attn_output", "ffn_gate", "ffn_up", "ffn_down",
                               "q_proj", "k_proj", "v_proj", "qkv_proj", "o_proj", "gate_proj", "up_proj", "gate_up_proj", "down_proj"]
        func isProjection(_ name: String) -> Bool { projectionNames.contains { name.contains($0 + ".weight") } }
        let opened = try ModelLoader.open(path)
        if let gguf = opened.gguf {
            let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
            let projections = gguf.tensors.filter { isProjection($0.name) }.reduce(0) { $0 + $1.byteCount }
            return ModelSourceInfo(fileBytes: size ?? 0, weightsBorrowedFromMap: false, projectionFileBytes: projections,
                                   vocabularySize: config.vocabSize)
        }
        let checkpoint = try SafetensorsCheckpoint(path: path)
        var total = 0, projections = 0, allF32 = true
        for shard in checkpoint.shards {
            for t in shard.tensors {
                total += t.byteCount
                if isProjection(t.name) { projections += t.byteCount }
                if t.dtype.isFloatingPoint && t.dtype != .f32 { allF32 = false }
            }
        }
        return ModelSourceInfo(fileBytes: total, weightsBorrowedFromMap: allF32, projectionFileBytes: projections,
                               vocabularySize: config.vocabSize)
    }
}

/// Predicted peak memory of a LoRA training run, part by part, from the
/// buffers Loft allocates (LayerActivations, LayerGradients, LoRA.Saved, the
/// chunked LM head, the optimizer's moments), plus measured constants for
/// what is not Loft's own (the process, BLAS).
public struct MemoryPlan: Sendable {
    public struct Part: Sendable {
        public var name: String
        public var bytes: Int
        public var detail: String
    }

    public let target: MemoryTarget
    public let microBatchSize: Int
    public let sequenceLen: Int
    public let gradientCheckpointing: Bool
    /// Resident during training, at its peak (the start of the backward).
    public private(set) var parts: [Part] = []
    /// While the model loads, the source file is mapped and read beside the
    /// weights being built; this is that phase's peak.
    public private(set) var loadingPeakBytes = 0
    public var trainingPeakBytes: Int { parts.reduce(0) { $0 + $1.bytes } }
    public var peakBytes: Int { max(trainingPeakBytes, loadingPeakBytes) }

    // Measured constants (Linux x86-64, release build; see BENCHMARKS.md).
    /// RSS of `loft` before it loads anything: Swift runtime, Foundation,
    /// OpenBLAS (`loft --help` peaks at 23.1 MiB).
    public static let processBaselineBytes = 24 << 20
    /// OpenBLAS' per-thread GEMM packing buffers, as touched by training GEMMs.
    public static let blasWorkspacePerThreadBytes = 4 << 20
    /// Tokenizer tables per vocabulary entry (strings, id maps, merges):
    /// `loft tokenize` of SmolLM2's GGUF (49152 tokens) peaks 12 MiB above the baseline.
    public static let tokenizerBytesPerToken = 256
    /// A CUDA context with cuBLAS workspace, typical.
    public static let cudaContextBytes = 600 << 20

    public init(model c: ModelConfig, lora: LoRAConfig, microBatchSize: Int, sequenceLen: Int, gradientCheckpointing: Bool,
                momentStorage: AdapterOptimizer.MomentStorage, base: BaseWeightStorage, source: ModelSourceInfo,
                datasetBytes: Int = 0, target: MemoryTarget = .cpu, threads: Int = ProcessInfo.processInfo.activeProcessorCount) {
        self.target = target
        self.microBatchSize = microBatchSize
        self.sequenceLen = sequenceLen
        self.gradientCheckpointing = gradientCheckpointing
        let onGPU: Bool
        if case .gpu = target { onGPU = true } else { onGPU = false }
        // Loft's CPU backend keeps activations in f32 whatever the compute
        // precision (bf16/fp16 compute only rounds GEMM inputs, into transient
        // copies of one operand and a 256-column panel of the other, well inside
        // the workspace's margin); a GPU run is planned with bf16 activations.
        let act = onGPU ? 2 : 4
        let n = microBatchSize * sequenceLen
        let (h, L) = (c.hiddenSize, c.layers)
        let shapes = c.projectionShapes

        // Base weights.
        // Sparse layers (mixture of experts) have experts and a router instead of the dense MLP.
        let sparseLayers = (0 ..< L).filter { c.isSparse(layer: $0) }.count
        func layersWith(_ name: String) -> Int { ["gate", "up", "down", "gate_up"].contains(name) ? L - sparseLayers : L }
        let expertParams = sparseLayers * c.experts * 3 * h * c.expertIntermediateSize
        let projectionParams = shapes.reduce(0) { $0 + $1.value.inFeatures * $1.value.outFeatures * layersWith($1.key) } + expertParams
        let biasParams = c.attentionBias ? (c.heads + 2 * c.kvHeads) * c.headDim * L : 0
        let normParams = (2 * L + 1) * h + (c.qkNorm ? 2 * c.headDim * L : 0) + sparseLayers * c.experts * h  // + routers
        let embeddingParams = c.vocabSize * h * (c.tieWordEmbeddings ? 1 : 2)
        let otherParams = biasParams + normParams + embeddingParams
        let projectionBytes: Int
        let projectionRows = shapes.reduce(0) { $0 + $1.value.outFeatures * layersWith($1.key) }
            + sparseLayers * c.experts * (2 * c.expertIntermediateSize + h)
        switch base {
        case .f32: projectionBytes = 4 * projectionParams
        case .bf16: projectionBytes = 2 * projectionParams
        case .int8: projectionBytes = projectionParams + 4 * projectionRows
        case .nf4(let dq):
            let blocks = (projectionParams + 63) / 64
            projectionBytes = projectionParams / 2 + (dq ? blocks + 4 * ((blocks + 255) / 256) + 2 * 256 * 4 : 4 * blocks)
        case .ggufKept: projectionBytes = source.projectionFileBytes
        }
        let otherBytes = Int(Double(otherParams) * base.nonProjectionBytesPerParameter)
        let weightBytes = projectionBytes + otherBytes
        let totalParams = projectionParams + otherParams
        parts.append(Part(name: "base weights", bytes: weightBytes,
                          detail: String(format: "%.1fM parameters, projections %@, the rest %@", Double(totalParams) / 1e6,
                                         base.label, base == .bf16 ? "bf16" : "f32")))

        // LoRA: A [r, in] and B [out, r] per adapted projection, a gradient each (f32).
        let adapted = LoRAConfig.modules(lora.targetModules, for: c).compactMap { LoRAConfig.shortNames[$0] }
        var loraParams = 0
        var tensorSizes: [Int] = []
        for name in adapted {
            guard let s = shapes[name] else { continue }
            let layers = layersWith(name)
            tensorSizes += Array(repeating: lora.rank * s.inFeatures, count: layers) + Array(repeating: lora.rank * s.outFeatures, count: layers)
            loraParams += lora.rank * (s.inFeatures + s.outFeatures) * layers
        }
        parts.append(Part(name: "LoRA weights", bytes: 4 * loraParams,
                          detail: "\(loraParams) parameters (r=\(lora.rank), \(adapted.count) modules × \(L) layers), f32"))
        parts.append(Part(name: "LoRA gradients", bytes: 4 * loraParams, detail: "f32"))

        // Optimizer moments.
        var optimizerBytes = 0
        for count in tensorSizes {
            if momentStorage == .blockwise8bit && count >= AdapterOptimizer.minimum8bitSize {
                optimizerBytes += 2 * count + 2 * 4 * BlockwiseQuantization.blockCount(count) + 2 * 64
            } else {
                optimizerBytes += 8 * count
            }
        }
        parts.append(Part(name: "optimizer state", bytes: optimizerBytes,
                          detail: momentStorage == .blockwise8bit
                              ? "AdamW 8-bit: 2 B/param + f32 absmax per 256 (tensors under \(AdapterOptimizer.minimum8bitSize) stay f32)"
                              : "AdamW: m and v in f32, 8 B/param"))

        // Activations: each layer's LayerActivations plus its adapters' saved state.
        let dropout = lora.dropout > 0
        let loraSaved = adapted.reduce(0) { total, name in
            guard let s = shapes[name] else { return total }
            return total + LayerActivations.loraSavedElementCount(tokens: n, inFeatures: s.inFeatures, rank: lora.rank, dropout: dropout)
        }
        let perLayer = LayerActivations.trainingElementCount(config: c, tokens: n) + loraSaved
        if gradientCheckpointing {
            parts.append(Part(name: "activations", bytes: act * (L * n * h + perLayer),
                              detail: "gradient checkpointing: \(L) layer inputs [\(n) × \(h)] + one layer recomputed (\(perLayer / max(n, 1)) values/token)"))
        } else {
            parts.append(Part(name: "activations", bytes: act * L * perLayer,
                              detail: "\(L) layers × \(perLayer / max(n, 1)) values/token × \(n) tokens"))
        }
        // The larger of the loss phase (residual, final norm, its gradient, one
        // logits chunk) and the backward's first layer (residual, dx, the
        // shared gradient buffers, an adapter's temporaries).
        let chunk = min(n, 256)
        // Gemma 2's soft-capped logits keep a second chunk: the capped values for the gradient.
        let lossPhase = act * (3 * n * h + n) + 4 * chunk * c.vocabSize * (c.finalLogitSoftcap == nil ? 1 : 2)
        let widest = shapes.values.map(\.inFeatures).max() ?? h
        let backwardPhase = act * (2 * n * h + LayerGradients.elementCount(config: c, tokens: n) + n * lora.rank
                                   + (dropout ? n * widest : 0))
        parts.append(Part(name: lossPhase >= backwardPhase ? "logits chunk + loss" : "backward scratch",
                          bytes: max(lossPhase, backwardPhase),
                          detail: String(format: "loss phase %.1f MiB (logits %d × %d f32), backward phase %.1f MiB",
                                         Double(lossPhase) / 1048576, chunk, c.vocabSize, Double(backwardPhase) / 1048576)))

        // Workspace: GEMM packing buffers, attention's per-task score blocks, quantized-weight tiles.
        var workspace = Self.blasWorkspacePerThreadBytes * max(1, threads) + 2 * 4 * 64 * n * max(1, threads)
        if base != .f32 && base != .bf16 {
            let widestProjection = shapes.values.map { $0.inFeatures * $0.outFeatures }.max() ?? 0
            workspace += 4 * widestProjection
        }
        parts.append(Part(name: "workspace", bytes: workspace, detail: "BLAS buffers, attention scores, dequantized tiles"))

        if onGPU {
            parts.append(Part(name: "CUDA context", bytes: Self.cudaContextBytes, detail: "context + cuBLAS workspace, typical"))
        } else {
            let hostData = Self.tokenizerBytesPerToken * source.vocabularySize + 4 * datasetBytes
            parts.append(Part(name: "tokenizer + dataset", bytes: hostData,
                              detail: "tokenizer tables; dataset rows parsed and tokenized (~4× the files)"))
            parts.append(Part(name: "process baseline", bytes: Self.processBaselineBytes,
                              detail: "Swift runtime, Foundation, OpenBLAS"))
            // Loading: the file is mapped and read beside the weights it becomes.
            let fixed = weightBytes + hostData + Self.processBaselineBytes
            loadingPeakBytes = fixed + (source.weightsBorrowedFromMap ? 0 : source.fileBytes)
        }
    }

    /// The largest value in 1...limit for which `plan(value)` fits in `budget`
    /// bytes, or nil when even 1 does not (plans grow with the value).
    public static func largest(upTo limit: Int, fitting budget: Int, _ plan: (Int) -> MemoryPlan) -> Int? {
        guard limit >= 1, plan(1).peakBytes <= budget else { return nil }
        var lo = 1, hi = limit
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if plan(mid).peakBytes <= budget { lo = mid } else { hi = mid - 1 }
        }
        return lo
    }
}

/// Plans for one training config: reads the model's headers once, then
/// answers for any target, micro-batch size and sequence length.
public struct MemoryPlanner: Sendable {
    public let config: TrainConfig
    public let model: ModelConfig
    public let source: ModelSourceInfo
    public let base: BaseWeightStorage
    public let datasetBytes: Int

    public init(config: TrainConfig, base: BaseWeightStorage? = nil) throws {
        self.config = config
        let opened = try ModelLoader.open(config.baseModel)
        model = opened.config
        source = try ModelSourceInfo.inspect(config.baseModel, config: opened.config)
        // a pre-quantized bitsandbytes base is planned as it is stored, whatever the config asks
        self.base = try base ?? BaseWeightStorage.from(opened.weights.baseFormat(requested: config.baseWeights))
        datasetBytes = config.datasets.reduce(0) { total, d in
            total + ((try? FileManager.default.attributesOfItem(atPath: d.path)[.size] as? Int) ?? 0)
        }
    }

    /// Sequences one example trains: a preference pair trains prompt + chosen and prompt + rejected
    /// in one forward (the reference pass reuses the same model, and keeps no activations).
    public var sequencesPerExample: Int { config.preference.map { $0.method == "kto" ? 1 : 2 } ?? 1 }

    /// `microBatchSize` counts examples (pairs in preference mode); the plan's own counts sequences.
    public func plan(target: MemoryTarget = .cpu, microBatchSize: Int? = nil, sequenceLen: Int? = nil) -> MemoryPlan {
        MemoryPlan(model: model, lora: config.lora, microBatchSize: (microBatchSize ?? config.microBatchSize) * sequencesPerExample,
                   sequenceLen: sequenceLen ?? config.sequenceLen, gradientCheckpointing: config.gradientCheckpointing,
                   momentStorage: config.optimizer == "adamw_8bit" ? .blockwise8bit : .float32, base: base, source: source,
                   datasetBytes: datasetBytes, target: target)
    }

    /// What fits in `budget` bytes: the largest micro_batch_size at the
    /// config's sequence_len, and the largest sequence_len at its micro_batch_size.
    public struct Fit: Sendable {
        public var largestMicroBatchSize: Int?
        public var largestSequenceLen: Int?
    }

    public func fit(target: MemoryTarget = .cpu, budget: Int, microBatchLimit: Int = 4096,
                    sequenceLimit: Int = 1 << 20) -> Fit {
        Fit(largestMicroBatchSize: MemoryPlan.largest(upTo: microBatchLimit, fitting: budget) {
                plan(target: target, microBatchSize: $0) },
            largestSequenceLen: MemoryPlan.largest(upTo: sequenceLimit, fitting: budget) {
                plan(target: target, sequenceLen: $0) })
    }
}

/// The process's own memory, as the kernel counts it.
public enum ProcessMemory {
    /// Peak resident set size of this process image: Linux's VmHWM. Not
    /// getrusage's ru_maxrss there: it survives execve, so a `loft` started
    /// by a large parent (a test runner) reports the parent's RSS at fork.
    public static func peakResidentBytes() -> Int {
        #if os(Linux)
        if let hwm = procStatus("VmHWM:") { return hwm }
        #endif
        var usage = rusage()
        #if os(Linux)
        let who = RUSAGE_SELF.rawValue
        #else
        let who = RUSAGE_SELF
        #endif
        guard getrusage(who, &usage) == 0 else { return 0 }
        #if os(Linux)
        return Int(usage.ru_maxrss) * 1024  // kilobytes on Linux
        #else
        return Int(usage.ru_maxrss)  // bytes on Darwin
        #endif
    }

    /// Resident set size now (VmRSS), when the system says.
    public static func residentBytes() -> Int? { procStatus("VmRSS:") }

    /// Memory the system can give without swapping (MemAvailable), when it says.
    public static func availableBytes() -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) else { return nil }
        return field("MemAvailable:", in: text)
    }

    static func procStatus(_ key: String) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        return field(key, in: text)
    }

    /// "Key:   123 kB" → 123 × 1024 (/proc/self/status puts a tab after the colon).
    static func field(_ key: String, in text: String) -> Int? {
        for line in text.split(separator: "\n") where line.hasPrefix(key) {
            let parts = line.dropFirst(key.count).split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard let value = parts.first.flatMap({ Int($0) }) else { return nil }
            return parts.count > 1 && parts[1].lowercased() == "kb" ? value * 1024 : value
        }
        return nil
    }
}

extension MemoryPlan {
    /// "24GB", "24GiB", "16G", "512MB", "1073741824" → bytes. GB and GiB
    /// both mean 2³⁰ (GPU memory is quoted that way: a "24GB" card has 24 GiB).
    public static func parseBytes(_ text: String) -> Int? {
        let t = text.trimmingCharacters(in: .whitespaces).uppercased()
        let (k, m, g, tb): (Double, Double, Double, Double) = (1024, 1024 * 1024, 1024 * 1024 * 1024, 1024 * 1024 * 1024 * 1024)
        let units: [(String, Double)] = [("TIB", tb), ("TB", tb), ("T", tb), ("GIB", g), ("GB", g), ("G", g),
                                         ("MIB", m), ("MB", m), ("M", m), ("KIB", k), ("KB", k), ("K", k), ("B", 1)]
        for (suffix, scale) in units where t.hasSuffix(suffix) {
            guard let v = Double(t.dropLast(suffix.count).trimmingCharacters(in: .whitespaces)), v > 0, v.isFinite else { return nil }
            return Int(v * scale)
        }
        guard let v = Double(t), v > 0, v.isFinite else { return nil }
        return Int(v)
    }

    /// "1.23 GiB" / "456.7 MiB".
    public static func format(_ bytes: Int) -> String {
        let b = Double(bytes)
        if b >= Double(1 << 30) { return String(format: "%.2f GiB", b / Double(1 << 30)) }
        return String(format: "%.1f MiB", b / Double(1 << 20))
    }
}
