import LoftModels
import LoftTensors

/// The reference model of DPO, IPO and KTO, without a second copy of the
/// base: the same model run with its adapters swapped out.
///
/// - A fresh LoRA: the adapters are switched off (PEFT's `disable_adapter`),
///   so the reference is the base model.
/// - Training that continues from an adapter (`lora_model_dir`, e.g. after
///   SFT): a frozen copy of the starting adapter (TRL's "ref" adapter), so at
///   step 0 policy = reference, the loss is ln 2 and the rewards are 0. The
///   base alone would be the wrong reference there (LLaMA-Factory#8974).
public final class ReferencePolicy: @unchecked Sendable {
    public enum Kind: String, Sendable, Codable {
        case adapterDisabled = "adapter_disabled"
        case startingAdapter = "starting_adapter"
    }

    public let kind: Kind
    /// The frozen starting adapter, by layer and module path (startingAdapter only).
    private var frozen: [[String: LoRA]] = []

    public init(model: LlamaModel, kind: Kind) {
        self.kind = kind
        guard kind == .startingAdapter else { return }
        let b = model.backend
        func copy(_ t: Tensor) -> Tensor { let c = b.zeros(t.shape, dtype: .f32); b.copy(t, into: c); return c }
        frozen = model.layers.map { layer in
            var out: [String: LoRA] = [:]
            for (path, linear) in layer.projections {
                guard let l = linear.lora else { continue }
                let f = LoRA(a: copy(l.a), b: copy(l.b), scale: l.scale, dropout: 0)
                f.magnitude = l.magnitude.map(copy)
                out[path] = f
            }
            return out
        }
    }

    /// Runs `body` with the model as the reference, then puts the trained adapters back.
    public func withReference<T>(_ model: LlamaModel, _ body: () throws -> T) rethrows -> T {
        var trained: [(Linear, LoRA?)] = []
        for (i, layer) in model.layers.enumerated() {
            for (path, linear) in layer.projections {
                trained.append((linear, linear.lora))
                linear.lora = kind == .adapterDisabled ? nil : frozen[i][path]
            }
        }
        defer { for (linear, lora) in trained { linear.lora = lora } }
        return try body()
    }
}
