import LoftFormats

extension LlamaModel {
    /// Moves every attached adapter under the projections as a frozen one
    /// (`Linear.frozenAdapters`), leaving room for a new adapter over it: an
    /// SFT adapter kept fixed while a DPO adapter trains, or applied first
    /// when several are merged in sequence. DoRA rescales whole rows, so it
    /// cannot sit under another adapter this way.
    public func freezeAdapters() throws {
        if trainedEmbedding != nil || trainedLMHead != nil {
            throw FormatError("adapter", "has fully trained modules (modules_to_save), which cannot be stacked under another adapter")
        }
        for layer in layers {
            for (path, linear) in layer.projections {
                guard let lora = linear.lora else { continue }
                if lora.magnitude != nil {
                    throw FormatError("adapter", "\(path) is a DoRA adapter, which cannot be stacked under another adapter; merge it into the base first (loft merge)")
                }
                lora.dropout = 0
                linear.frozenAdapters.append(lora)
                linear.lora = nil
            }
        }
    }
}
