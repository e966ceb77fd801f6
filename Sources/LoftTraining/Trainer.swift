import Foundation
import LoftData
import LoftModels
import LoftTensors

/// The training loop, top to bottom: plan the data, accumulate micro-batch
/// gradients, step the optimizer on a schedule, log, evaluate, checkpoint.
public final class Trainer {
    public struct Event: Sendable {
        public enum Kind: Sendable { case step, eval, checkpoint, earlyStop, done }
        public var kind: Kind
        public var step: Int
        public var totalSteps: Int
        public var loss: Double?
        public var learningRate: Double?
        public var gradNorm: Double?
        public var tokensPerSecond: Double?
        public var secondsRemaining: Double?
        public var path: String?
        /// fp16: the loss scale this step's backward used.
        public var lossScale: Double?
        /// fp16: the optimizer step was skipped (a gradient was inf or NaN).
        public var skipped = false
        /// Eval events: the generation metrics of `generationMetrics`, by name.
        public var metrics: [String: Double] = [:]
    }

    public let config: TrainConfig
    public let model: LlamaModel
    /// In memory, or read from the token cache a micro-batch at a time.
    public let train: ExampleSet
    public let validation: [TokenizedExample]
    public let optimizer: AdapterOptimizer
    public let step: TrainingStep
    public internal(set) var state = TrainerState()
    /// Called for every step, evaluation and checkpoint (progress display, logs).
    public var onEvent: ((Event) -> Void)?
    /// Generation metrics on the validation split at each eval step
    /// (config `eval_metrics`; `loft train` sets this from LoftEval).
    public var generationMetrics: ((LlamaModel) -> [String: Double])?
    /// Set to stop after the current optimizer step (Ctrl-C); a checkpoint is written first.
    public var stopRequested = false

    public convenience init(config: TrainConfig, model: LlamaModel, train: [TokenizedExample], validation: [TokenizedExample]) throws {
        try self.init(config: config, model: model, train: ExampleSet(train), validation: validation)
    }

    public init(config: TrainConfig, model: LlamaModel, train: ExampleSet, validation: [TokenizedExample]) throws {
        guard !train.isEmpty else { throw TrainingError("no training examples: the datasets produced nothing to train on") }
        self.config = config
        self.model = model
        self.train = train
        self.validation = validation
        if model.adapterSlots.isEmpty { try model.attachLoRA(config.lora, seed: config.seed) }
        optimizer = AdapterOptimizer(model: model, weightDecay: Float(config.weightDecay),
                                     loraPlusRatio: Float(config.loraPlusLRRatio),
                                     momentStorage: config.optimizer == "adamw_8bit" ? .blockwise8bit : .float32)
        step = TrainingStep(model: model, gradientCheckpointing: config.gradientCheckpointing)
        if config.computePrecision == .fp16 { state.lossScaler = LossScaler() }
    }

    func plan(epoch: Int) -> BatchPlan {
        BatchPlan(lengths: train.lengths, epoch: epoch, seed: config.seed, microBatchSize: config.microBatchSize,
                  packing: config.samplePacking, tokensPerMicroBatch: config.sequenceLen * config.microBatchSize)
    }

    /// Optimizer steps in the whole run.
    public var totalSteps: Int { config.totalSteps(microBatchesPerEpoch: plan(epoch: 0).microBatches.count) }

    var warmupSteps: Int { config.warmupSteps(totalSteps: totalSteps) }

    /// Continues from the newest checkpoint in output_dir.
    public func resume() throws -> String? {
        guard let (restored, dir) = try Checkpoint.resumeLatest(config, model: model, optimizer: optimizer) else { return nil }
        state = restored
        return dir
    }

    /// Runs to the end (or to early stopping / a stop request). Returns the final state.
    @discardableResult
    public func run() throws -> TrainerState {
        let total = totalSteps
        var epochPlan = plan(epoch: state.epoch)
        let started = Date()
        var tokensSeen = 0
        let startStep = state.step
        while state.step < total && !stopRequested {
            // Gather this step's micro-batches, moving to the next epoch as plans run out.
            var batches: [MicroBatch] = []
            while batches.count < config.gradientAccumulationSteps {
                if state.cursor >= epochPlan.microBatches.count {
                    state.epoch += 1
                    state.cursor = 0
                    epochPlan = plan(epoch: state.epoch)
                    if config.maxSteps == nil && !batches.isEmpty { break }
                }
                batches.append(try BatchPlan.microBatch(epochPlan.microBatches[state.cursor], from: train))
                state.cursor += 1
            }
            let targets = batches.reduce(0) { $0 + $1.targetCount }
            guard targets > 0 else { continue }
            var lossSum = 0.0
            // fp16: the backward starts from loss · scale (the loss itself is reported unscaled).
            let scaling = config.computePrecision == .fp16
            let lossScale = scaling ? state.lossScaler.map { Float($0.scale) } : nil
            for (j, mb) in batches.enumerated() {
                lossSum += step.accumulate(mb, gradScale: (lossScale ?? 1) / Float(targets),
                                           dropoutSeed: config.seed &+ UInt64(state.step) &* 1_000_003 &+ UInt64(j))
                tokensSeen += mb.ids.count
            }
            // The schedule advances with updates taken, not with skipped steps: HF Trainer steps its
            // LR scheduler only `if not accelerator.optimizer_step_was_skipped` (and accelerate's
            // AcceleratedScheduler returns early for a skipped optimizer), while global_step counts both.
            let lr = config.lrScheduler.rate(base: config.learningRate, step: state.optimizerSteps, total: total, warmup: warmupSteps)
            let outcome = optimizer.update(lr: Float(lr), maxGradNorm: Float(config.maxGradNorm), lossScale: lossScale)
            let norm = outcome.gradNorm
            if scaling { state.lossScaler?.update(foundNonFinite: outcome.skipped) }
            state.step += 1
            let loss = lossSum / Double(targets)
            state.losses.append(loss)
            let elapsed = Date().timeIntervalSince(started)
            let perStep = elapsed / Double(state.step - startStep)
            onEvent?(Event(kind: .step, step: state.step, totalSteps: total, loss: loss, learningRate: lr, gradNorm: norm,
                           tokensPerSecond: Double(tokensSeen) / max(elapsed, 1e-9),
                           secondsRemaining: perStep * Double(total - state.step), lossScale: lossScale.map(Double.init),
                           skipped: outcome.skipped))

            var stopEarly = false
            if let every = config.evalSteps, every > 0, !validation.isEmpty, state.step % every == 0 || state.step == total {
                let evalLoss = evaluate()
                state.evalLosses[String(state.step)] = evalLoss
                let generated = generationMetrics?(model) ?? [:]
                var event = Event(kind: .eval, step: state.step, totalSteps: total, loss: evalLoss)
                event.metrics = generated
                onEvent?(event)
                // The best checkpoint by metric_for_best_model (eval_loss unless named).
                let key = config.metricForBestModel.map { $0.hasPrefix("eval_") ? String($0.dropFirst(5)) : $0 } ?? "loss"
                let value = key == "loss" ? evalLoss : generated[key] ?? .nan
                let higher = config.greaterIsBetter ?? !(key == "loss" || key == "perplexity")
                let best = state.bestMetric ?? (key == "loss" ? state.bestEvalLoss : nil)   // a checkpoint from before bestMetric
                if value.isFinite && (best.map { higher ? value > $0 : value < $0 } ?? true) {
                    state.bestMetric = value
                    state.bestEvalLoss = evalLoss
                    state.bestStep = state.step
                    state.evalsWithoutImprovement = 0
                } else {
                    state.evalsWithoutImprovement += 1
                    if let patience = config.earlyStoppingPatience, state.evalsWithoutImprovement >= patience { stopEarly = true }
                }
            }
            let due = config.saveSteps.map { $0 > 0 && state.step % $0 == 0 } ?? false
            if due || stopEarly || stopRequested {
                let path = try saveCheckpoint()
                onEvent?(Event(kind: .checkpoint, step: state.step, totalSteps: total, path: path))
            }
            if stopEarly {
                onEvent?(Event(kind: .earlyStop, step: state.step, totalSteps: total))
                break
            }
        }
        CPUBufferPool.shared.releaseAll()
        onEvent?(Event(kind: .done, step: state.step, totalSteps: total))
        return state
    }

    public func saveCheckpoint() throws -> String {
        let path = try Checkpoint.save(model: model, optimizer: optimizer, state: state, lora: config.lora,
                                       baseModel: config.baseModel, outputDir: config.outputDir)
        if let limit = config.saveTotalLimit, limit > 0 {
            Checkpoint.prune(config.outputDir, limit: limit, keep: state.bestStep)
        }
        return path
    }

    /// Mean token loss over the validation examples.
    public func evaluate() -> Double {
        var total = 0.0, count = 0
        var i = 0
        while i < validation.count {
            let mb = BatchPlan.microBatch(Array(i ..< min(validation.count, i + config.microBatchSize)), from: validation)
            total += step.loss(mb)
            count += mb.targetCount
            i += config.microBatchSize
        }
        return count > 0 ? total / Double(count) : .nan
    }
}
