import Foundation
import LoftModels
import LoftTensors

/// Autoregressive generation with a KV cache: the prompt is run once, then
/// each new token costs one single-token forward pass.
public final class Generator {
    public let model: LlamaModel

    public init(model: LlamaModel) { self.model = model }

    public struct Result: Sendable {
        public var tokens: [Int32]
        public var stoppedOnToken: Bool
        public var promptSeconds: Double
        public var generationSeconds: Double
    }

    /// Generates up to `maxNewTokens` after `prompt`, calling `onToken` as each
    /// arrives (return false to stop). Stops after any of `stopTokens`, which is
    /// kept in the output as transformers does.
    public func generate(prompt: [Int32], maxNewTokens: Int, sampling: SamplingOptions = .greedy,
                         stopTokens: Set<Int32> = [], onToken: ((Int32) -> Bool)? = nil) -> Result {
        precondition(!prompt.isEmpty, "generation needs at least one prompt token")
        let cache = KVCache(config: model.config, capacity: prompt.count + maxNewTokens, backend: model.backend)
        var sampler = Sampler(sampling)
        var context = prompt
        var out: [Int32] = []
        let t0 = Date()
        // Prompt rows through the GEMM and generated rows through the GGUF-block
        // kernels, as the batched engine routes them: the same tokens either way.
        var logits = QuantizedDecoding.withRoute(.gemm) { model.forward(ids: prompt, cache: cache, logitRows: [prompt.count - 1]) }
        let t1 = Date()
        var stopped = false
        while out.count < maxNewTokens {
            let values = model.backend.download(logits)
            let next = values.withUnsafeBufferPointer { sampler.next(logits: $0, context: context) }
            out.append(next)
            context.append(next)
            if let onToken, !onToken(next) { break }
            if stopTokens.contains(next) { stopped = true; break }
            if out.count == maxNewTokens { break }
            logits = QuantizedDecoding.withRoute(.kernels) { model.forward(ids: [next], cache: cache, logitRows: [0]) }
        }
        return Result(tokens: out, stoppedOnToken: stopped, promptSeconds: t1.timeIntervalSince(t0),
                      generationSeconds: Date().timeIntervalSince(t1))
    }
}
