import Foundation
import LoftData
import LoftModels
import LoftTensors

/// The training loop of preference objectives (DPO, IPO, ORPO, KTO, SimPO):
/// the same schedule, optimizer, fp16 loss scaling, checkpoints and exact
/// resume as `Trainer`, over preference examples instead of token streams.
public final class PreferenceTrainer {
    public struct Event: Sendable {
        public enum Kind: Sendable { case step, eval, checkpoint, warning, done }
        public var kind: Kind
        public var step: Int
        public var totalSteps: Int
        public var loss: Double?
        public var learningRate: Double?
        public var gradNorm: Double?
        public var pairsPerSecond: Double?
        public var secondsRemaining: Double?
        /// TRL's metrics for the step (or the validation split): rewards/…, logps/….
        public var metrics: [String: Double] = [:]
        public var message: String?
        public var path: String?
        public var lossScale: Double?
        public var skipped = false
    }

    public let config: TrainConfig
    public let preference: PreferenceConfig
    public let model: LlamaModel
    public let train: [PreferenceExample]
    public let validation: [PreferenceExample]
    public let optimizer: AdapterOptimizer
    public let step: PreferenceStep
    public internal(set) var state = TrainerState()
    /// Precomputed reference log-probs (rl_precompute_reference), by example index.
    public var referenceCache: ReferenceCache?
    public var onEvent: ((Event) -> Void)?
    public var stopRequested = false
    /// Alarm: this many steps with every reward exactly 0 means the policy is the reference.
    public var zeroRewardSteps = 10
    private var zeroRewardRun = 0
    private var raised: Set<String> = []

    /// - model: with its adapters attached (fresh, or loaded from `lora_model_dir`).
    public init(config: TrainConfig, model: LlamaModel, train: [PreferenceExample], validation: [PreferenceExample]) throws {
        guard let preference = config.preference else { throw TrainingError("PreferenceTrainer needs `rl:` in the config") }
        guard !train.isEmpty else { throw TrainingError("no training examples: the preference datasets produced nothing to train on") }
        if model.trainedLMHead != nil || model.trainedEmbedding != nil {
            throw TrainingError("lora_modules_to_save is not supported with rl: yet; remove it")
        }
        let objective = preference.objective()
        if objective.unpaired, config.microBatchSize < 2 {
            throw TrainingError("rl: kto estimates its KL term from mismatched pairs within a micro-batch, so micro_batch_size must be ≥ 2 (TRL's rule); set micro_batch_size: 2 or more")
        }
        if objective.unpaired, train.contains(where: { $0.label == nil }) {
            throw TrainingError("rl: kto needs rows with a boolean `label` (desirable or not); these datasets hold chosen/rejected pairs: use rl: dpo")
        }
        if !objective.unpaired, let bad = train.firstIndex(where: { $0.label != nil }) {
            throw TrainingError("rl: \(preference.method) needs chosen/rejected pairs, but training example \(bad + 1) is a KTO row with a `label`; use rl: kto")
        }
        self.config = config
        self.preference = preference
        self.model = model
        self.train = train
        self.validation = validation
        if model.adapterSlots.isEmpty { try model.attachLoRA(config.lora, seed: config.seed) }
        // TRL's DPOConfig.disable_dropout (default true) turns off every dropout, the adapters' included.
        for slot in model.adapterSlots { slot.lora.dropout = 0 }
        optimizer = AdapterOptimizer(model: model, weightDecay: Float(config.weightDecay),
                                     loraPlusRatio: Float(config.loraPlusLRRatio),
                                     momentStorage: config.optimizer == "adamw_8bit" ? .blockwise8bit : .float32)
        let reference = ReferencePolicy(model: model, kind: preference.startingAdapter == nil ? .adapterDisabled : .startingAdapter)
        step = PreferenceStep(step: TrainingStep(model: model, gradientCheckpointing: config.gradientCheckpointing),
                              objective: objective, reference: reference)
        if config.computePrecision == .fp16 { state.lossScaler = LossScaler() }
    }

    func plan(epoch: Int) -> BatchPlan {
        BatchPlan(lengths: train.map(\.totalTokens), epoch: epoch, seed: config.seed, microBatchSize: config.microBatchSize,
                  packing: false, tokensPerMicroBatch: 0)
    }

    public var totalSteps: Int { config.totalSteps(microBatchesPerEpoch: plan(epoch: 0).microBatches.count) }

    var warmupSteps: Int { config.warmupSteps(totalSteps: totalSteps) }

    public func resume() throws -> String? {
        guard let (restored, dir) = try Checkpoint.resumeLatest(config, model: model, optimizer: optimizer) else { return nil }
        state = restored
        return dir
    }

    func cached(_ indices: [Int], split: ReferenceCache.Split) -> (sequences: [Double], kl: [Double])? {
        guard let cache = referenceCache, !(step.objective is KTO) else { return nil }
        return cache.lookup(indices, split: split, pairs: !step.objective.unpaired)
    }

    @discardableResult
    public func run() throws -> TrainerState {
        let total = totalSteps
        var epochPlan = plan(epoch: state.epoch)
        let started = Date()
        var pairsSeen = 0
        let startStep = state.step
        while state.step < total && !stopRequested {
            var batches: [[Int]] = []
            while batches.count < config.gradientAccumulationSteps {
                if state.cursor >= epochPlan.microBatches.count {
                    state.epoch += 1
                    state.cursor = 0
                    epochPlan = plan(epoch: state.epoch)
                    if config.maxSteps == nil && !batches.isEmpty { break }
                }
                batches.append(epochPlan.microBatches[state.cursor])
                state.cursor += 1
            }
            let scaling = config.computePrecision == .fp16
            let lossScale = scaling ? state.lossScaler.map { Float($0.scale) } : nil
            // HF Trainer divides each micro-batch's mean loss by the accumulation steps.
            let gradScale = Double(lossScale ?? 1) / Double(batches.count)
            var lossSum = 0.0
            var metrics: [PreferenceMetrics] = []
            for (j, indices) in batches.enumerated() {
                let examples = indices.map { train[$0] }
                let out = step.accumulate(examples, gradScale: gradScale,
                                          dropoutSeed: config.seed &+ UInt64(state.step) &* 1_000_003 &+ UInt64(j),
                                          cachedReference: cached(indices, split: .train))
                lossSum += out.loss
                metrics.append(out.metrics)
                pairsSeen += examples.count
            }
            let lr = config.lrScheduler.rate(base: config.learningRate, step: state.optimizerSteps, total: total, warmup: warmupSteps)
            let outcome = optimizer.update(lr: Float(lr), maxGradNorm: Float(config.maxGradNorm), lossScale: lossScale)
            if scaling { state.lossScaler?.update(foundNonFinite: outcome.skipped) }
            state.step += 1
            let loss = lossSum / Double(batches.count)
            state.losses.append(loss)
            let stepMetrics = PreferenceMetrics.mean(metrics).values
            let elapsed = Date().timeIntervalSince(started)
            let perStep = elapsed / Double(state.step - startStep)
            onEvent?(Event(kind: .step, step: state.step, totalSteps: total, loss: loss, learningRate: lr, gradNorm: outcome.gradNorm,
                           pairsPerSecond: Double(pairsSeen) / max(elapsed, 1e-9), secondsRemaining: perStep * Double(total - state.step),
                           metrics: stepMetrics, lossScale: lossScale.map(Double.init), skipped: outcome.skipped))
            checkAlarms(loss: loss, metrics: stepMetrics, total: total)

            if let every = config.evalSteps, every > 0, !validation.isEmpty, state.step % every == 0 || state.step == total {
                let (evalLoss, evalMetrics) = evaluate()
                state.evalLosses[String(state.step)] = evalLoss
                if state.bestEvalLoss.map({ evalLoss < $0 }) ?? true { state.bestEvalLoss = evalLoss; state.bestStep = state.step }
                onEvent?(Event(kind: .eval, step: state.step, totalSteps: total, loss: evalLoss, metrics: evalMetrics.values))
            }
            let due = config.saveSteps.map { $0 > 0 && state.step % $0 == 0 } ?? false
            if due || stopRequested {
                let path = try saveCheckpoint()
                onEvent?(Event(kind: .checkpoint, step: state.step, totalSteps: total, path: path))
            }
        }
        CPUBufferPool.shared.releaseAll()
        onEvent?(Event(kind: .done, step: state.step, totalSteps: total))
        return state
    }

    /// The log's alarms: a policy that equals its reference, a reference that
    /// does not belong to the policy, and non-finite losses.
    func checkAlarms(loss: Double, metrics: [String: Double], total: Int) {
        func warn(_ key: String, _ message: String) {
            guard !raised.contains(key) else { return }
            raised.insert(key)
            onEvent?(Event(kind: .warning, step: state.step, totalSteps: total, message: message))
        }
        if !loss.isFinite || metrics.values.contains(where: { !$0.isFinite }) {
            warn("nan", "step \(state.step): the loss or a reward is \(loss.isFinite ? "not finite" : String(loss)); lower learning_rate, check the data for empty completions, or use fp32/bf16 instead of fp16")
        }
        if step.objective.usesReference {
            let zero = metrics["rewards/chosen"] == 0 && metrics["rewards/rejected"] == 0
            zeroRewardRun = zero ? zeroRewardRun + 1 : 0
            if zeroRewardRun >= zeroRewardSteps {
                warn("zero", "rewards have been exactly 0 for \(zeroRewardRun) steps: the policy equals its reference (is the learning rate 0, or are the adapters not trained?)")
            }
            if state.step <= 3, metrics["rewards/accuracies"] == 1, loss < 0.05 {
                warn("mismatch", "step \(state.step): reward accuracy 1 with loss \(String(format: "%.4f", loss)) at the start of training: the reference does not match the policy's starting point (LLaMA-Factory#8974); when continuing from an adapter, set lora_model_dir so it is the reference")
            }
        }
    }

    public func saveCheckpoint() throws -> String {
        let path = try Checkpoint.save(model: model, optimizer: optimizer, state: state, lora: config.lora,
                                       baseModel: config.baseModel, outputDir: config.outputDir)
        if let limit = config.saveTotalLimit, limit > 0 { Checkpoint.prune(config.outputDir, limit: limit, keep: state.bestStep) }
        return path
    }

    /// The objective's mean loss and TRL's metrics over the validation split.
    public func evaluate() -> (loss: Double, metrics: PreferenceMetrics) {
        var losses: [Double] = [], metrics: [PreferenceMetrics] = []
        var i = 0
        while i < validation.count {
            let indices = Array(i ..< min(validation.count, i + config.microBatchSize))
            let out = step.evaluate(indices.map { validation[$0] }, cachedReference: cached(indices, split: .validation))
            losses.append(out.loss)
            metrics.append(out.metrics)
            i += config.microBatchSize
        }
        return (losses.isEmpty ? .nan : losses.reduce(0, +) / Double(losses.count), PreferenceMetrics.mean(metrics))
    }
}
