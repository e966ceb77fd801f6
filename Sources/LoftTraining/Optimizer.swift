import Foundation
import LoftModels
import LoftTensors

/// AdamW over the attached adapters, with clipping by global gradient norm,
/// as torch.optim.AdamW with torch.nn.utils.clip_grad_norm_ does it.
public final class AdapterOptimizer {
    public struct Parameter {
        public let name: String
        public let value: Tensor
        public let moment1: Tensor
        public let moment2: Tensor
        /// Multiplies the learning rate (LoRA+ trains B faster than A).
        public let learningRateScale: Float
        let gradient: () -> Tensor?
    }

    public let backend: Backend
    public private(set) var parameters: [Parameter] = []
    /// The adapters whose parameters this optimizer updates (told when they change).
    var loras: [LoRA] = []
    public var weightDecay: Float
    public var beta1: Float, beta2: Float, eps: Float
    /// Optimizer steps taken so far (Adam's bias correction counts from 1).
    public private(set) var step = 0

    /// - loraPlusRatio: LoRA+ (Hayou et al. 2024): B's learning rate is this
    ///   many times A's; 1 is plain LoRA.
    public init(model: LlamaModel, weightDecay: Float = 0, beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8,
                loraPlusRatio: Float = 1) {
        backend = model.backend
        self.weightDecay = weightDecay
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        for slot in model.adapterSlots {
            let lora = slot.lora
            parameters.append(Parameter(name: slot.peftPrefix + ".lora_A.weight", value: lora.a,
                                        moment1: backend.zeros(lora.a.shape, dtype: .f32),
                                        moment2: backend.zeros(lora.a.shape, dtype: .f32), learningRateScale: 1,
                                        gradient: { lora.gradA }))
            parameters.append(Parameter(name: slot.peftPrefix + ".lora_B.weight", value: lora.b,
                                        moment1: backend.zeros(lora.b.shape, dtype: .f32),
                                        moment2: backend.zeros(lora.b.shape, dtype: .f32), learningRateScale: loraPlusRatio,
                                        gradient: { lora.gradB }))
            if let magnitude = lora.magnitude {
                // PEFT's LoRA+ puts every 1-D adapter parameter in B's group.
                parameters.append(Parameter(name: slot.peftPrefix + ".lora_magnitude_vector", value: magnitude,
                                            moment1: backend.zeros(magnitude.shape, dtype: .f32),
                                            moment2: backend.zeros(magnitude.shape, dtype: .f32),
                                            learningRateScale: loraPlusRatio, gradient: { lora.gradMagnitude }))
            }
            loras.append(lora)
        }
        for (key, weight) in model.fullyTrainedWeights {
            parameters.append(Parameter(name: key, value: weight.value, moment1: backend.zeros(weight.value.shape, dtype: .f32),
                                        moment2: backend.zeros(weight.value.shape, dtype: .f32), learningRateScale: 1,
                                        gradient: { weight.gradient }))
        }
    }

    /// The global L2 norm of all gradients.
    public func gradientNorm() -> Double {
        parameters.reduce(0.0) { acc, p in acc + (p.gradient().map { backend.sumOfSquares($0) } ?? 0) }.squareRoot()
    }

    /// Clips to `maxNorm` (when > 0), takes one AdamW step at `lr`, zeroes the
    /// gradients. Returns the gradient norm before clipping.
    @discardableResult
    public func update(lr: Float, maxGradNorm: Float) -> Double {
        let norm = gradientNorm()
        step += 1
        if maxGradNorm > 0 {
            // torch: clip_coef = max_norm / (total_norm + 1e-6), clamped at 1.
            let coef = Float(Double(maxGradNorm) / (norm + 1e-6))
            if coef < 1 { for p in parameters { if let g = p.gradient() { backend.scale(g, by: coef) } } }
        }
        for p in parameters {
            guard let g = p.gradient() else { continue }
            let hyper = AdamWHyper(lr: lr * p.learningRateScale, beta1: beta1, beta2: beta2, eps: eps,
                                   weightDecay: weightDecay, step: step)
            backend.adamW(param: p.value, grad: g, m: p.moment1, v: p.moment2, hyper: hyper)
        }
        parametersReplaced()
        zeroGradients()
        return norm
    }

    /// Drops what the adapters derived from their old values (DoRA's weight norm).
    public func parametersReplaced() { for lora in loras { lora.parametersChanged() } }

    public func zeroGradients() {
        for p in parameters { if let g = p.gradient() { backend.scale(g, by: 0) } }
    }

    /// Restores the step count (from a checkpoint).
    public func restore(step: Int) { self.step = step }
}

/// Learning-rate schedules with linear warmup, as transformers' get_*_schedule_with_warmup.
public enum LearningRateSchedule: String, Codable, Sendable, CaseIterable {
    case constant, linear, cosine

    /// The rate for optimizer step `step` (0-based) of `total`.
    public func rate(base: Double, step: Int, total: Int, warmup: Int) -> Double {
        if step < warmup { return base * Double(step) / Double(max(1, warmup)) }
        let progress = Double(step - warmup) / Double(max(1, total - warmup))
        switch self {
        case .constant: return base
        case .linear: return base * max(0, 1 - progress)
        case .cosine: return base * max(0, 0.5 * (1 + Foundation.cos(Double.pi * progress)))
        }
    }
}
