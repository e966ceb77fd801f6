import Foundation
import LoftFormats
import LoftTensors

/// Writes a PEFT LoRA adapter as a llama.cpp LoRA GGUF (for `llama-cli --lora`):
/// `general.type = adapter`, `adapter.type = lora`, `adapter.lora.alpha`, and
/// per projection `blk.N.<name>.weight.lora_a` (A, [r, in] row-major, GGUF
/// dims [in, r]) and `.lora_b` (B, [out, r], GGUF dims [r, out]) in F32.
/// llama.cpp scales by alpha / r, so alpha is written as scale·r (which also
/// carries rsLoRA's alpha/√r). For Llama-architecture files the rows of B for
/// attn_q / attn_k get the converter's q/k permutation, as the base weights do.
public enum GGUFLoRAExporter {
    public struct Report {
        public let path: String
        public let tensors: Int
        public let alpha: Float
        public let rank: Int
    }

    /// `base` is the model the adapter was trained on (its config gives the
    /// architecture and head counts; its weights are not written).
    @discardableResult
    public static func export(adapter: String, base: String, to path: String, overwrite: Bool = false) throws -> Report {
        try GGUFExporter.checkOutputFile(path, overwrite: overwrite)
        let (model, _) = try ModelLoader.load(base)
        let config = try PEFTAdapter.load(adapter, into: model)
        return try export(model: model, loraConfig: config, name: URL(fileURLWithPath: adapter).lastPathComponent, to: path)
    }

    public static func export(model: LlamaModel, loraConfig: LoRAConfig, name: String, to path: String) throws -> Report {
        let c = model.config
        let arch = GGUFExporter.ggufArchitecture(c.architecture)
        let slots = model.adapterSlots
        guard let first = slots.first else { throw FormatError(path, "the model has no adapter attached; nothing to export") }
        if loraConfig.useDoRA || slots.contains(where: { $0.lora.magnitude != nil }) {
            throw FormatError(path, "this is a DoRA adapter (use_dora: true) and llama.cpp's LoRA GGUF has no DoRA magnitude; fold it into the model instead with `loft merge BASE --adapter DIR --out merged/` or `loft export gguf BASE --adapter DIR --out model.gguf`")
        }
        let scale = first.lora.scale
        guard slots.allSatisfy({ $0.lora.scale == scale && $0.lora.rank == first.lora.rank }) else {
            throw FormatError(path, "the adapter's projections use different ranks or scales; llama.cpp's LoRA GGUF has one alpha")
        }
        let rank = first.lora.rank
        var w = GGUFWriter()
        w.set("general.architecture", .string(arch))
        w.set("general.type", .string("adapter"))
        w.set("general.name", .string(name))
        w.set("adapter.type", .string("lora"))
        w.set("adapter.lora.alpha", .float32(scale * Float(rank)))
        w.set("general.file_type", .uint32(0))
        let permute = c.architecture == .llama || c.architecture == .mistral
        let bk = model.backend
        for slot in slots {
            let linear = model.layers[slot.layer].projections.first { $0.0.hasSuffix(slot.module) }!.1
            let hf = "model.layers.\(slot.layer).\(model.layers[slot.layer].projections.first { $0.0.hasSuffix(slot.module) }!.0).weight"
            guard let g = GGUFWeights.ggufName(hf, architecture: c.architecture) else { throw FormatError(path, "no GGUF name for \(hf)") }
            let a = bk.download(slot.lora.a)
            var b = bk.download(slot.lora.b)
            if permute && (slot.module == "q_proj" || slot.module == "k_proj") {
                let heads = slot.module == "q_proj" ? c.heads : c.kvHeads
                try b.withUnsafeMutableBufferPointer { try permuteLlamaQK($0.baseAddress!, rows: linear.outFeatures, cols: rank, heads: heads) }
            }
            try w.addTensor(name: g + ".lora_a", shape: [rank, linear.inFeatures], type: .f32,
                            data: GGMLQuantizer.encode(a, rowLength: linear.inFeatures, as: .f32, name: g + ".lora_a"))
            try w.addTensor(name: g + ".lora_b", shape: [linear.outFeatures, rank], type: .f32,
                            data: GGMLQuantizer.encode(b, rowLength: rank, as: .f32, name: g + ".lora_b"))
        }
        try w.write(to: path)
        return Report(path: path, tensors: slots.count * 2, alpha: scale * Float(rank), rank: rank)
    }
}
