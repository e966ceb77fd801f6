import Foundation
import LoftFormats
import LoftTensors

/// An adapter trained over a frozen one (`base_adapter`: a DPO adapter over
/// the SFT adapter it continues) only means something with that one under
/// it. Its loft_run.json names the lower adapter; `PEFTAdapter.load` then
/// attaches both as one adapter of rank r₁ + r₂ per module:
///
///     s₁·B₁·A₁·x + s₂·B₂·A₂·x = [s₁B₁ | s₂B₂] · [A₁; A₂] · x   (scale 1)
///
/// the same update, exact, as one pair of GEMMs — so generation, chat, eval,
/// serving (per-row adapters), GGUF LoRA export and merge all see the
/// adapter the user trained, not its top half.
extension PEFTAdapter {
    /// The `base_adapter` a Loft preference run recorded in `directory`'s
    /// loft_run.json, when there is one.
    public static func baseAdapter(of directory: String) throws -> String? {
        let file = URL(fileURLWithPath: directory).appendingPathComponent("loft_run.json")
        guard let data = try? Data(contentsOf: file),
              let run = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
              let base = run["base_adapter"] as? String, !base.isEmpty else { return nil }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: base, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw FormatError(file.path, "this adapter was trained over base_adapter \(base), which is gone; it only works with that adapter under it (restore it, or merge both while you have them)")
        }
        let here = URL(fileURLWithPath: directory).standardizedFileURL.path
        guard URL(fileURLWithPath: base).standardizedFileURL.path != here else {
            throw FormatError(file.path, "base_adapter names this adapter itself")
        }
        return base
    }

    /// `directory`'s adapter with its recorded base adapter (and that one's,
    /// down the chain) under it, as one adapter; `stack: false` loads the
    /// directory alone (for callers that apply the chain themselves, as
    /// `loft merge --adapter SFT --adapter DPO` does).
    @discardableResult
    public static func load(_ directory: String, into model: LlamaModel, stack: Bool) throws -> LoRAConfig {
        guard stack, let base = try baseAdapter(of: directory) else { return try loadAlone(directory, into: model) }
        let lowerConfig = try load(base, into: model, stack: true)
        if model.trainedEmbedding != nil || model.trainedLMHead != nil {
            throw FormatError(base, "has fully trained modules (modules_to_save), which cannot sit under another adapter; merge it into the base first (loft merge)")
        }
        var lower: [ObjectIdentifier: LoRA] = [:]
        for layer in model.layers {
            for (_, linear) in layer.projections { if let l = linear.lora { lower[ObjectIdentifier(linear)] = l } }
        }
        let upperConfig = try loadAlone(directory, into: model)
        if lowerConfig.useDoRA || upperConfig.useDoRA {
            throw FormatError(directory, "a DoRA adapter cannot be stacked with base_adapter \(base); merge the base adapter into the model first")
        }
        let rank = lowerConfig.rank + upperConfig.rank
        let b = model.backend
        for layer in model.layers {
            for (_, linear) in layer.projections {
                let parts = [lower[ObjectIdentifier(linear)], linear.lora]
                guard parts.contains(where: { $0 != nil }) else { continue }
                let (n, m) = (linear.inFeatures, linear.outFeatures)
                var a = [Float](), bCols = [[Float]](repeating: [], count: m)
                for (part, r) in zip(parts, [lowerConfig.rank, upperConfig.rank]) {
                    guard let part else {  // this adapter has no such module: zero rank rows
                        a += [Float](repeating: 0, count: r * n)
                        for j in 0 ..< m { bCols[j] += [Float](repeating: 0, count: r) }
                        continue
                    }
                    precondition(part.rank == r, "stacked adapter: rank \(part.rank) where the config says \(r)")
                    a += b.download(part.a)
                    let pb = b.download(part.b)
                    for j in 0 ..< m { bCols[j] += pb[j * r ..< (j + 1) * r].map { $0 * part.scale } }
                }
                linear.lora = LoRA(a: b.upload(a, shape: [rank, n]), b: b.upload(bCols.flatMap { $0 }, shape: [m, rank]), scale: 1)
            }
        }
        var config = upperConfig
        config.rank = rank
        config.alpha = Double(rank)   // scale 1: the scales live in B
        config.useRSLoRA = false
        config.targetModules = Array(Set(lowerConfig.targetModules).union(upperConfig.targetModules)).sorted()
        return config
    }
}
