import Foundation
import LoftModels
import LoftTensors

/// One micro-batch: sequences packed into a single row of tokens (no
/// padding), with labels in Hugging Face's convention — labels[t] is the
/// token at t, and the loss at position t predicts labels[t + 1] of the same
/// sequence; −100 is never trained.
public struct MicroBatch: Sendable {
    public var ids: [Int32]
    public var labels: [Int32]
    /// Start of each packed sequence, beginning with 0.
    public var segments: [Int]

    public init(ids: [Int32], labels: [Int32], segments: [Int] = [0]) {
        precondition(ids.count == labels.count, "ids and labels differ in length")
        self.ids = ids
        self.labels = labels
        self.segments = segments
    }

    /// Several sequences packed one after another.
    public init(sequences: [(ids: [Int32], labels: [Int32])]) {
        var ids: [Int32] = [], labels: [Int32] = [], segments: [Int] = []
        for s in sequences {
            segments.append(ids.count)
            ids += s.ids
            labels += s.labels
        }
        self.init(ids: ids, labels: labels, segments: segments.isEmpty ? [0] : segments)
    }

    /// Positions restart at 0 for every packed sequence.
    public var positions: [Int32] {
        var out = [Int32](repeating: 0, count: ids.count)
        let bounds = segments + [ids.count]
        for s in 0 ..< segments.count { for t in bounds[s] ..< bounds[s + 1] { out[t] = Int32(t - bounds[s]) } }
        return out
    }

    /// The label each position is trained to predict (the next token of its
    /// own sequence), −100 where there is none.
    public var targets: [Int32] {
        var out = [Int32](repeating: -100, count: ids.count)
        let bounds = segments + [ids.count]
        for s in 0 ..< segments.count where bounds[s + 1] > bounds[s] {
            for t in bounds[s] ..< bounds[s + 1] - 1 { out[t] = labels[t + 1] }
        }
        return out
    }

    /// How many tokens carry a loss.
    public var targetCount: Int { targets.filter { $0 >= 0 }.count }
}

/// Forward, loss and backward of one micro-batch through a model with LoRA
/// adapters attached; the adapters' gradients accumulate across calls.
public final class TrainingStep {
    public let model: LlamaModel
    /// Keep only each layer's input and recompute the layer before its backward.
    public var gradientCheckpointing: Bool
    /// Rows of the [tokens × vocab] logits computed at once: the whole logits
    /// matrix never exists, only this many rows of it.
    public var lossChunkRows = 256

    public init(model: LlamaModel, gradientCheckpointing: Bool = false) {
        self.model = model
        self.gradientCheckpointing = gradientCheckpointing
    }

    /// Adds this micro-batch's gradients, scaled by `gradScale` (1 / trained
    /// tokens of the whole accumulated batch, so the loss is the mean over
    /// every trained token rather than a mean of micro-batch means). Returns
    /// the summed token loss. `dropoutSeed` makes LoRA dropout replayable.
    public func accumulate(_ mb: MicroBatch, gradScale: Float, dropoutSeed: UInt64 = 0) -> Double {
        let m = model, b = m.backend, c = m.config
        let pass = forwardForTraining(ids: mb.ids, positions: mb.positions, segments: mb.segments, dropoutSeed: dropoutSeed)
        let n = pass.batch.count
        let hidden = pass.hidden
        // The LM head and cross-entropy a chunk of rows at a time.
        let dHidden = b.zeros([n, c.hiddenSize], dtype: .f32)
        let targets = mb.targets
        var lossSum = 0.0
        // One logits buffer for every chunk: a fresh one per chunk (50 MB for
        // SmolLM2) is a fresh mmap whose pages fault in during the GEMM, which
        // made the LM head's forward run at half its backward's rate.
        let logitsBuffer = b.zeros([max(1, min(n, lossChunkRows)), c.vocabSize], dtype: .f32)
        // Gemma 2's soft-capped logits: the capped values, for the gradient through the cap.
        let cappedBuffer = c.finalLogitSoftcap == nil ? nil : b.zeros(logitsBuffer.shape, dtype: .f32)
        var r0 = 0
        while r0 < n {
            let r1 = min(n, r0 + lossChunkRows)
            let logits = logitsBuffer.rows(0 ..< r1 - r0), capped = cappedBuffer?.rows(0 ..< r1 - r0)
            b.linear(hidden.rows(r0 ..< r1), m.lmHead, bias: nil, into: logits, accumulate: false)
            m.softcapLogits(logits, saving: capped)
            lossSum += b.crossEntropy(logits: logits, labels: Array(targets[r0 ..< r1]), dLogits: logits, gradScale: gradScale)
            if let capped { m.softcapLogitsBackward(logits, capped: capped) }
            if let head = m.trainedLMHead {
                // lm_head in modules_to_save: dW += dlogitsᵀ·h
                let g = head.gradient ?? b.zeros(head.value.shape, dtype: .f32)
                head.gradient = g
                b.linearBackwardWeight(logits, hidden.rows(r0 ..< r1), into: g, accumulate: true)
            }
            b.linearBackwardInput(logits, m.lmHead, into: dHidden.rows(r0 ..< r1), accumulate: false)
            r0 = r1
        }
        backward(pass, dHidden: dHidden)
        return lossSum
    }

    /// What a training forward keeps for its backward: the layers' saved
    /// activations (or, with checkpointing, their inputs), the residual
    /// stream, and the final-norm output the loss head reads.
    public final class ForwardPass {
        public let batch: LlamaModel.Batch
        /// The residual stream after the last layer (the final norm's input).
        let x: Tensor
        /// The final RMSNorm of x: what the LM head multiplies.
        public let hidden: Tensor
        let rstd: Tensor
        var saved: [LayerActivations]
        let inputs: [Tensor]
        let dropoutSeed: UInt64
        init(batch: LlamaModel.Batch, x: Tensor, hidden: Tensor, rstd: Tensor, saved: [LayerActivations], inputs: [Tensor], dropoutSeed: UInt64) {
            self.batch = batch; self.x = x; self.hidden = hidden; self.rstd = rstd
            self.saved = saved; self.inputs = inputs; self.dropoutSeed = dropoutSeed
        }
    }

    /// The forward half of a training step: every layer with what its
    /// backward needs, then the final norm. A loss head turns `hidden` into
    /// ∂L/∂hidden and hands it to `backward`.
    public func forwardForTraining(ids: [Int32], positions: [Int32], segments: [Int], dropoutSeed: UInt64 = 0) -> ForwardPass {
        let m = model, b = m.backend, c = m.config
        let batch = m.batch(ids: ids, positions: positions, segments: segments)
        let n = batch.count
        let x = m.embed(batch)
        var saved: [LayerActivations] = []
        var inputs: [Tensor] = []
        for i in m.layers.indices {
            if gradientCheckpointing {
                let copy = b.zeros([n, c.hiddenSize], dtype: .f32)
                b.copy(x, into: copy)
                inputs.append(copy)
                m.forwardLayer(i, x: x, batch: batch, saved: activations(i, tokens: n, dropoutSeed: dropoutSeed))
            } else {
                let s = activations(i, tokens: n, dropoutSeed: dropoutSeed)
                m.forwardLayer(i, x: x, batch: batch, saved: s)
                saved.append(s)
            }
        }
        let rstd = b.zeros([n], dtype: .f32)
        let hidden = m.finalHidden(x, rstd: rstd)
        return ForwardPass(batch: batch, x: x, hidden: hidden, rstd: rstd, saved: saved, inputs: inputs, dropoutSeed: dropoutSeed)
    }

    /// The backward half: from ∂L/∂hidden through the final norm and every
    /// layer, last first; the adapters' gradients accumulate.
    public func backward(_ pass: ForwardPass, dHidden: Tensor) {
        let m = model, b = m.backend, c = m.config
        let batch = pass.batch, n = batch.count
        let dx = b.zeros([n, c.hiddenSize], dtype: .f32)
        b.rmsNormBackward(dHidden, x: pass.x, weight: m.finalNorm, weightOffset: c.normWeightOffset, rstd: pass.rstd,
                          dx: dx, accumulate: false, dweight: nil)
        let scratch = LayerGradients(config: c, tokens: n, backend: b)
        for i in m.layers.indices.reversed() {
            let s: LayerActivations
            if gradientCheckpointing {
                s = activations(i, tokens: n, dropoutSeed: pass.dropoutSeed)
                m.forwardLayer(i, x: pass.inputs[i], batch: batch, saved: s)
            } else {
                s = pass.saved[i]
            }
            m.backwardLayer(i, dx: dx, batch: batch, saved: s, scratch: scratch)
            if !gradientCheckpointing { pass.saved.removeLast() }
        }
        if let embedding = m.trainedEmbedding {
            // embed_tokens in modules_to_save: dx is now ∂L/∂(scaled embedding rows).
            if let scale = c.embeddingScale { b.scale(dx, by: scale) }
            let g = embedding.gradient ?? b.zeros(embedding.value.shape, dtype: .f32)
            embedding.gradient = g
            b.embeddingBackward(ids: batch.ids, dOut: dx, dTable: g)
        }
    }

    func activations(_ i: Int, tokens n: Int, dropoutSeed: UInt64) -> LayerActivations {
        let s = LayerActivations(config: model.config, tokens: n, backend: model.backend, training: true, adapted: adaptedModules(layer: i))
        for (name, saved) in s.lora { saved.dropoutSeed = Self.seed(dropoutSeed, layer: i, module: name) }
        return s
    }

    /// The short module names with adapters, per layer.
    func adaptedModules(layer i: Int) -> Set<String> {
        Set(model.layers[i].projections.compactMap { path, linear in
            linear.lora == nil ? nil : LoRAConfig.shortNames[String(path.split(separator: ".").last!)]
        })
    }

    static func seed(_ base: UInt64, layer: Int, module: String) -> UInt64 {
        var h = base &* 0x100_0000_01B3 ^ UInt64(layer)
        for byte in module.utf8 { h = (h ^ UInt64(byte)) &* 0x100_0000_01B3 }
        return h
    }
}

extension TrainingStep {
    /// The summed token loss of a micro-batch, forward only (for evaluation).
    public func loss(_ mb: MicroBatch) -> Double {
        let m = model, b = m.backend, c = m.config
        let batch = m.batch(ids: mb.ids, positions: mb.positions, segments: mb.segments)
        let x = m.embed(batch)
        let scratch = LayerActivations(config: c, tokens: batch.count, backend: b)
        for i in m.layers.indices { m.forwardLayer(i, x: x, batch: batch, saved: scratch) }
        let hidden = m.finalHidden(x)
        let targets = mb.targets
        var total = 0.0
        let logitsBuffer = b.zeros([max(1, min(batch.count, lossChunkRows)), c.vocabSize], dtype: .f32)   // reused, as in `accumulate`
        var r0 = 0
        while r0 < batch.count {
            let r1 = min(batch.count, r0 + lossChunkRows)
            let logits = logitsBuffer.rows(0 ..< r1 - r0)
            b.linear(hidden.rows(r0 ..< r1), m.lmHead, bias: nil, into: logits, accumulate: false)
            m.softcapLogits(logits)
            total += b.crossEntropy(logits: logits, labels: Array(targets[r0 ..< r1]), dLogits: nil, gradScale: 0)
            r0 = r1
        }
        return total
    }
}
