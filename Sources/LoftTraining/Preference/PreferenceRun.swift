import Foundation
import LoftData
import LoftHub
import LoftModels
import LoftTensors
import LoftTokenizers

/// A whole preference run (`rl:` in the config) as a library call: check the
/// data and config before any compute, load the model with a fresh adapter
/// or the one it continues from (`lora_model_dir`, which is then also the
/// frozen reference), train, and write the adapter where PEFT finds it.
public final class PreferenceRun {
    public let config: TrainConfig
    public let preference: PreferenceConfig
    public let tokenizer: Tokenizer
    public let data: PreparedPreferenceDataset
    public let trainer: PreferenceTrainer
    public let device: ResolvedDevice
    public let modelPath: String

    public init(config: TrainConfig, resume: Bool, overwrite: Bool,
                downloadProgress: ((String, Int64, Int64?) -> Void)? = nil) throws {
        var config = config
        guard let preference = config.preference else { throw TrainingError("PreferenceRun needs `rl:` in the config") }
        self.preference = preference
        let fm = FileManager.default
        let existing = (try? fm.contentsOfDirectory(atPath: config.outputDir))?.filter { !$0.hasPrefix(".") } ?? []
        if !existing.isEmpty && !resume && !overwrite {
            throw TrainingError("output_dir \(config.outputDir) already holds \(existing.count) file(s); pass --resume to continue that run, --overwrite to replace it, or set another output_dir")
        }
        if let start = preference.startingAdapter ?? preference.baseAdapter, URL(fileURLWithPath: start).standardizedFileURL == URL(fileURLWithPath: config.outputDir).standardizedFileURL {
            throw TrainingError("the adapter this run starts from and output_dir are the same directory (\(start)); the run would overwrite the adapter it starts from and uses as its reference: set another output_dir")
        }
        device = try ResolvedDevice.resolve(config.device, precision: config.computePrecision)
        if overwrite && !resume { for name in existing { try fm.removeItem(atPath: config.outputDir + "/" + name) } }
        modelPath = try HubModel.localPath(config.baseModel, progress: downloadProgress)
        tokenizer = try Tokenizer.load(source: modelPath)
        var options = DataOptions(sequenceLen: config.sequenceLen)
        options.valSetSize = config.valSetSize
        options.seed = config.seed
        options.chatTemplate = config.chatTemplate
        options.skipBadRows = config.skipBadRows
        let builder = try PreferenceDatasetBuilder(tokenizer: tokenizer, options: options)
        builder.maxPromptLen = preference.maxPromptLen
        data = try builder.build(config.datasets)
        let (model, _) = try ModelLoader.load(modelPath, backend: device.backend, baseWeights: config.baseWeights)
        if model.config.vocabSize < tokenizer.vocabularySize {
            throw TrainingError("the tokenizer has \(tokenizer.vocabularySize) tokens but the model's vocabulary is \(model.config.vocabSize); they do not belong together")
        }
        if let start = preference.startingAdapter {
            // The adapter's own shape (r, alpha, targets) replaces the config's lora_* keys.
            do { config.lora = try PEFTAdapter.load(start, into: model) } catch {
                throw TrainingError("lora_model_dir \(start): \(error); point it at the output_dir of the SFT run (the folder with adapter_model.safetensors)")
            }
        } else {
            if let base = preference.baseAdapter {
                do {
                    try PEFTAdapter.load(base, into: model)
                    try model.freezeAdapters()
                } catch {
                    throw TrainingError("base_adapter \(base): \(error); point it at the output_dir of the SFT run (the folder with adapter_model.safetensors)")
                }
            }
            try model.attachLoRA(config.lora, seed: config.seed)
        }
        self.config = config
        trainer = try PreferenceTrainer(config: config, model: model, train: data.train, validation: data.validation)
    }

    /// rl_precompute_reference: the reference log-probs from the disk cache,
    /// or computed now and cached (keyed by data, base, starting adapter, precision).
    @discardableResult
    public func prepareReferenceCache(progress: ((Int, Int) -> Void)? = nil) throws -> (cache: ReferenceCache, reused: Bool)? {
        guard preference.precomputeReference, trainer.step.objective.usesReference else { return nil }
        let baseHash = (try? TrainingRun.fileHash(modelPath)) ?? modelPath
        let adapterHash = try (preference.startingAdapter ?? preference.baseAdapter).map { try TrainingRun.fileHash($0 + "/adapter_model.safetensors") }
        let key = ReferenceCache.key(train: data.train, validation: data.validation,
                                     baseHash: baseHash + "|" + config.computePrecision.rawValue + "|" + config.baseWeights.summary,
                                     adapterHash: adapterHash)
        if let cache = ReferenceCache.load(key: key) {
            trainer.referenceCache = cache
            return (cache, true)
        }
        let cache = try ReferenceCache.build(key: key, step: trainer.step, train: data.train, validation: data.validation,
                                             batchSize: max(1, config.microBatchSize), progress: progress)
        trainer.referenceCache = cache
        return (cache, false)
    }

    /// The adapter (PEFT layout), template, config and the run's record with the TRL version it follows.
    public func saveOutputs(state: TrainerState) throws {
        let dir = config.outputDir
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try PEFTAdapter.save(trainer.model, config: config.lora, baseModel: config.baseModel, to: dir)
        if trainer.model.baseWeights.kind != .f32 { try trainer.model.baseWeights.write(toDirectory: dir) }
        if let template = config.chatTemplate.map(BuiltinTemplate.source(of:)) ?? tokenizer.chatTemplate {
            try template.write(toFile: dir + "/chat_template.jinja", atomically: true, encoding: .utf8)
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(config).write(to: URL(fileURLWithPath: dir + "/loft_config.json"), options: .atomic)
        let metadata: [String: Any] = [
            "loft_version": TrainingRun.version,
            "mode": "preference",
            "rl": preference.method,
            "objective": trainer.step.objective.name,
            "beta": preference.method == "orpo" ? preference.orpoAlpha : preference.beta,
            "trl_version": PreferenceConfig.trlVersion,
            "reference": trainer.step.reference.kind.rawValue,
            "starting_adapter": preference.startingAdapter ?? NSNull(),
            "base_adapter": preference.baseAdapter ?? NSNull(),
            "base_model": config.baseModel,
            "base_model_sha256": (try? TrainingRun.fileHash(modelPath)) ?? NSNull(),
            "dataset_sha256": data.hash,
            "train_examples": data.train.count,
            "validation_examples": data.validation.count,
            "steps": state.step,
            "losses": state.losses,
            "eval_losses": state.evalLosses,
            "lora": ["r": config.lora.rank, "alpha": config.lora.alpha, "target_modules": config.lora.targetModules,
                     "use_rslora": config.lora.useRSLoRA, "use_dora": config.lora.useDoRA],
            "learning_rate": config.learningRate, "micro_batch_size": config.microBatchSize,
            "gradient_accumulation_steps": config.gradientAccumulationSteps, "sequence_len": config.sequenceLen,
            "seed": config.seed, "optimizer": config.optimizer, "compute_precision": config.computePrecision.rawValue,
            "peak_rss_bytes": ProcessMemory.peakResidentBytes(),
        ]
        try JSONSerialization.data(withJSONObject: metadata, options: [.prettyPrinted, .sortedKeys])
            .write(to: URL(fileURLWithPath: dir + "/loft_run.json"), options: .atomic)
    }
}
