import Foundation
import LoftFormats
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
        /// With 8-bit AdamW: the moments, quantized (moment1/moment2 are then
        /// empty placeholders and take no memory).
        public var quantizedMoments: QuantizedMoments? = nil
    }

    /// Adam's moments as bitsandbytes' 8-bit optimizers keep them.
    public struct QuantizedMoments {
        /// First moment, signed dynamic map.
        public let m: BlockwiseQuantizedVector
        /// Second moment, unsigned dynamic map.
        public let v: BlockwiseQuantizedVector
    }

    /// How Adam's moments are stored.
    public enum MomentStorage: String, Sendable {
        /// f32, 8 bytes per trained parameter (adamw_torch).
        case float32
        /// bitsandbytes' blockwise 8-bit (adamw_8bit): 2 bytes per parameter
        /// plus 8 per block of 256, for tensors of at least
        /// `minimum8bitSize` elements; smaller ones stay f32, as bitsandbytes
        /// does (its min_8bit_size).
        case blockwise8bit
    }

    /// bitsandbytes' default min_8bit_size: smaller tensors keep f32 moments.
    public static let minimum8bitSize = 4096

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
    /// How the moments are stored.
    public let momentStorage: MomentStorage

    public init(model: LlamaModel, weightDecay: Float = 0, beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8,
                loraPlusRatio: Float = 1, momentStorage: MomentStorage = .float32) {
        backend = model.backend
        self.weightDecay = weightDecay
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.momentStorage = momentStorage
        for slot in model.adapterSlots {
            let lora = slot.lora
            parameters.append(makeParameter(name: slot.peftPrefix + ".lora_A.weight", value: lora.a, learningRateScale: 1,
                                            gradient: { lora.gradA }))
            parameters.append(makeParameter(name: slot.peftPrefix + ".lora_B.weight", value: lora.b,
                                            learningRateScale: loraPlusRatio, gradient: { lora.gradB }))
            if let magnitude = lora.magnitude {
                // PEFT's LoRA+ puts every 1-D adapter parameter in B's group.
                parameters.append(makeParameter(name: slot.peftPrefix + ".lora_magnitude_vector", value: magnitude,
                                                learningRateScale: loraPlusRatio, gradient: { lora.gradMagnitude }))
            }
            loras.append(lora)
        }
        for (key, weight) in model.fullyTrainedWeights {
            parameters.append(makeParameter(name: key, value: weight.value, learningRateScale: 1,
                                            gradient: { weight.gradient }))
        }
    }

    /// A parameter with zeroed moments in this optimizer's storage.
    func makeParameter(name: String, value: Tensor, learningRateScale: Float, gradient: @escaping () -> Tensor?) -> Parameter {
        if momentStorage == .blockwise8bit && value.count >= Self.minimum8bitSize {
            var p = Parameter(name: name, value: value, moment1: backend.zeros([0], dtype: .f32),
                              moment2: backend.zeros([0], dtype: .f32), learningRateScale: learningRateScale, gradient: gradient)
            p.quantizedMoments = QuantizedMoments(m: BlockwiseQuantizedVector(count: value.count, map: DynamicQuantizationMap.signed),
                                                  v: BlockwiseQuantizedVector(count: value.count, map: DynamicQuantizationMap.unsigned))
            return p
        }
        return Parameter(name: name, value: value, moment1: backend.zeros(value.shape, dtype: .f32),
                         moment2: backend.zeros(value.shape, dtype: .f32), learningRateScale: learningRateScale, gradient: gradient)
    }

    /// The global L2 norm of all gradients.
    public func gradientNorm() -> Double {
        parameters.reduce(0.0) { acc, p in acc + (p.gradient().map { backend.sumOfSquares($0) } ?? 0) }.squareRoot()
    }

    /// Clips to `maxNorm` (when > 0), takes one AdamW step at `lr`, zeroes the
    /// gradients. Returns the gradient norm before clipping.
    @discardableResult
    public func update(lr: Float, maxGradNorm: Float) -> Double {
        update(lr: lr, maxGradNorm: maxGradNorm, lossScale: nil).gradNorm
    }

    /// What one `update` did.
    public struct UpdateOutcome: Sendable {
        /// The global norm of the (unscaled) gradients before clipping.
        public var gradNorm: Double
        /// The step was skipped: a loss-scaled gradient held an inf or NaN.
        public var skipped: Bool
    }

    /// `update` for gradients of a loss multiplied by `lossScale` (fp16's
    /// dynamic loss scaling): they are unscaled before the norm and clipping,
    /// and when any is inf or NaN no parameter or moment changes (the step
    /// count neither), as GradScaler.step skips optimizer.step. Without a
    /// loss scale every step is taken, as torch does.
    public func update(lr: Float, maxGradNorm: Float, lossScale: Float?) -> UpdateOutcome {
        if let lossScale {
            let inverse = 1 / lossScale
            for p in parameters { if let g = p.gradient() { backend.scale(g, by: inverse) } }
        }
        let norm = gradientNorm()
        // Σg² of finite f32 gradients cannot overflow a double, so a non-finite norm means a non-finite gradient.
        if lossScale != nil && !norm.isFinite {
            // Overwritten, not scaled by 0: inf · 0 is NaN.
            for p in parameters { if let g = p.gradient() { backend.copy(backend.zeros(g.shape, dtype: .f32), into: g) } }
            return UpdateOutcome(gradNorm: norm, skipped: true)
        }
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
            if let q = p.quantizedMoments {
                backend.adamW8bit(param: p.value, grad: g, m: q.m, v: q.v, hyper: hyper)
            } else {
                backend.adamW(param: p.value, grad: g, m: p.moment1, v: p.moment2, hyper: hyper)
            }
        }
        parametersReplaced()
        zeroGradients()
        return UpdateOutcome(gradNorm: norm, skipped: false)
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
