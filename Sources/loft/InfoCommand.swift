import ArgumentParser
import Foundation
import LoftModels

struct InfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info",
        abstract: "Show a model's architecture, size and storage types, or (--devices) the CUDA devices.")

    @Argument(help: "A Hugging Face model directory or a .gguf file.")
    var model: String?

    @Flag(help: "List the CUDA devices Loft can use, or say why there are none.")
    var devices = false

    @Flag(help: "Print JSON.")
    var json = false

    func validate() throws {
        if model == nil && !devices { throw ValidationError("give a model directory or .gguf file, or --devices") }
    }

    func run() throws {
        if devices { return DeviceReport.print(json: json) }
        guard let model else { return }
        let opened = try ModelLoader.open(model)
        let c = opened.config
        var info: [String: Any] = [
            "architecture": c.architecture.rawValue,
            "parameters": c.parameterCount,
            "layers": c.layers,
            "hidden_size": c.hiddenSize,
            "intermediate_size": c.intermediateSize,
            "heads": c.heads,
            "kv_heads": c.kvHeads,
            "head_dim": c.headDim,
            "vocab_size": c.vocabSize,
            "context_length": c.maxPositionEmbeddings,
            "rope_theta": c.ropeTheta,
            "tied_embeddings": c.tieWordEmbeddings,
            "storage": opened.weights.storageSummary,
        ]
        if let w = c.slidingWindow { info["sliding_window"] = w }
        let sliding = c.layerTypes.filter { $0 == .sliding }.count
        if !c.layerTypes.isEmpty {
            info["sliding_layers"] = sliding
            if let local = c.localRopeTheta { info["local_rope_theta"] = local }
        }
        if c.experts > 0 {
            info["experts"] = c.experts
            info["experts_per_token"] = c.expertsPerToken
            info["expert_intermediate_size"] = c.expertIntermediateSize
            info["dense_layers"] = c.denseLayers.sorted()
        }
        if c.fusedProjections { info["fused_projections"] = true }
        if let r = c.rotaryDims { info["rotary_dims"] = r }
        info["supported_architectures"] = Architecture.allCases.map(\.rawValue)
        let bnb = (opened.weights as? SafetensorsWeights)?.bnb?.format.summary
        if let bnb { info["bitsandbytes"] = bnb }
        if json { printJSON(info); return }
        let storage = opened.weights.storageSummary.sorted { $0.key < $1.key }.map { "\($0.key) ×\($0.value)" }.joined(separator: ", ")
        print("""
        model          \(model)
        architecture   \(c.architecture.rawValue)
        parameters     \(String(format: "%.1fM", Double(c.parameterCount) / 1e6))
        layers         \(c.layers)
        hidden size    \(c.hiddenSize) (MLP \(c.intermediateSize))
        heads          \(c.heads) query, \(c.kvHeads) key/value, head size \(c.headDim)
        vocabulary     \(c.vocabSize)
        context        \(c.maxPositionEmbeddings)
        storage        \(storage)
        """)
        if !c.layerTypes.isEmpty, let w = c.slidingWindow {
            print("attention      \(sliding) of \(c.layers) layers see the last \(w) tokens (RoPE base \(Int(c.localRopeTheta ?? c.ropeTheta))), the rest all (base \(Int(c.ropeTheta)))")
        }
        if c.experts > 0 {
            let sparse = (0 ..< c.layers).filter { c.isSparse(layer: $0) }.count
            print("experts        \(c.experts) of MLP size \(c.expertIntermediateSize), \(c.expertsPerToken) per token\(c.normalizeTopK ? " (weights renormalised)" : ""), in \(sparse) of \(c.layers) layers")
        }
        if c.fusedProjections { print("projections    fused: qkv_proj and gate_up_proj (LoRA targets them by these names)") }
        if let r = c.rotaryDims { print("rotary         \(r) of \(c.headDim) dimensions per head") }
        if let bnb { print("bitsandbytes   \(bnb), read as stored (the frozen base of QLoRA)") }
    }
}
