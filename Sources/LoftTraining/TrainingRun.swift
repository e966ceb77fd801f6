import Foundation
import LoftData
import LoftFormats
import LoftHub
import LoftModels
import LoftTemplates
import LoftTensors
import LoftTokenizers

/// A whole run as `loft train` performs it, as a library call: check the
/// config and data before any compute, load, train, and write the adapter
/// where PEFT and Loft both find it.
public final class TrainingRun {
    public let config: TrainConfig
    public let tokenizer: Tokenizer
    public let data: StreamedDataset
    public let trainer: Trainer
    /// Which backend computes, and why (for the CLI to print).
    public let device: ResolvedDevice
    /// The predicted memory of this run (nil when the model's headers could not be planned from).
    public let memoryPlan: MemoryPlan?
    /// Where the base model's files are (the Hub cache's snapshot for a Hub id).
    public let modelPath: String

    public static let version = "0.1.0"

    /// Share of the memory budget auto_micro_batch plans into: the rest is
    /// headroom for the plan's error (it is checked to within 15%).
    public static let autoMicroBatchBudgetShare = 0.85

    /// Everything that can be checked before training: the output directory,
    /// the data (with its template), the model and its shapes.
    /// - downloadProgress: reports a Hub download when base_model is a Hub id.
    /// - dataProgress: reports the tokenizing pass when the data is not cached yet.
    public init(config: TrainConfig, resume: Bool, overwrite: Bool,
                downloadProgress: ((String, Int64, Int64?) -> Void)? = nil,
                dataProgress: ((TokenCache.Progress) -> Void)? = nil) throws {
        var config = config
        // Training multiplies a GGUF-kept base exactly (dequantized tiles);
        // the decoding kernels round activations to 8 bits, which is for
        // generation only, so a short micro-batch must not reach them.
        QuantizedDecoding.mode = nil
        let fm = FileManager.default
        let existing = (try? fm.contentsOfDirectory(atPath: config.outputDir))?.filter { !$0.hasPrefix(".") } ?? []
        if !existing.isEmpty && !resume && !overwrite {
            throw TrainingError("output_dir \(config.outputDir) already holds \(existing.count) file(s); pass --resume to continue that run, --overwrite to replace it, or set another output_dir")
        }
        device = try ResolvedDevice.resolve(config.device, precision: config.computePrecision)
        if overwrite && !resume {
            for name in existing { try fm.removeItem(atPath: config.outputDir + "/" + name) }
        }
        // A Hub id ("org/name") is fetched into the Hugging Face cache; the id
        // itself stays base_model_name_or_path in adapter_config.json, as PEFT writes it.
        let modelPath = try HubModel.localPath(config.baseModel, progress: downloadProgress)
        self.modelPath = modelPath
        var planned = config
        planned.baseModel = modelPath
        let planner = try? MemoryPlanner(config: planned)
        if config.autoMicroBatch {
            guard let planner, let available = ProcessMemory.availableBytes() else {
                throw TrainingError("auto_micro_batch: cannot plan memory here (no /proc/meminfo or unreadable model headers); set auto_micro_batch: false and micro_batch_size")
            }
            config.microBatchSize = try Self.autoMicroBatchSize(planner: planner, availableBytes: available,
                                                                residentBytes: ProcessMemory.residentBytes() ?? 0)
        }
        memoryPlan = planner?.plan(microBatchSize: config.microBatchSize)
        self.config = config
        tokenizer = try Tokenizer.load(source: modelPath)
        var options = DataOptions(sequenceLen: config.sequenceLen)
        options.trainOnInputs = config.trainOnInputs
        options.valSetSize = config.valSetSize
        options.seed = config.seed
        options.chatTemplate = config.chatTemplate
        options.trainOnEOS = config.trainOnEOS
        options.rolesToTrain = config.rolesToTrain
        options.skipBadRows = config.skipBadRows
        // Tokenized once, in one streaming pass, into the token cache ($LOFT_CACHE/data):
        // a rerun with the same data, tokenizer, template and options opens it at once.
        let builder = try DatasetBuilder(tokenizer: tokenizer, options: options)
        // The training split stays there: micro-batches read their examples from disk.
        data = try TokenCache().shards(config.datasets, builder: builder, progress: dataProgress).streamed(options: options)
        let (model, _) = try ModelLoader.load(modelPath, backend: device.backend, baseWeights: config.baseWeights)
        if model.config.vocabSize < tokenizer.vocabularySize {
            throw TrainingError("the tokenizer has \(tokenizer.vocabularySize) tokens but the model's vocabulary is \(model.config.vocabSize); they do not belong together")
        }
        try model.attachLoRA(config.lora, seed: config.seed)
        trainer = try Trainer(config: config, model: model, train: data.train, validation: data.validation)
    }

    /// The largest micro-batch (up to 256) whose plan fits the share of memory
    /// auto_micro_batch may use. The plan counts the whole process, so what it
    /// already holds (`residentBytes`) is part of the budget.
    public static func autoMicroBatchSize(planner: MemoryPlanner, availableBytes: Int, residentBytes: Int) throws -> Int {
        let budget = Int(Double(availableBytes + residentBytes) * autoMicroBatchBudgetShare)
        guard let fit = planner.fit(budget: budget, microBatchLimit: 256).largestMicroBatchSize else {
            throw TrainingError("auto_micro_batch: even micro_batch_size 1 at sequence_len \(planner.config.sequenceLen) needs \(MemoryPlan.format(planner.plan(microBatchSize: 1).peakBytes)), more than the \(MemoryPlan.format(budget)) it may use (\(Int(autoMicroBatchBudgetShare * 100))% of what is free); lower sequence_len, turn on gradient_checkpointing, or free memory")
        }
        return fit
    }

    /// Writes the final adapter (PEFT layout), the template it was trained
    /// with, the resolved config and the run's metadata into output_dir.
    public func saveOutputs(state: TrainerState) throws {
        let dir = config.outputDir
        try PEFTAdapter.save(trainer.model, config: config.lora, baseModel: config.baseModel, to: dir)
        // The model's storage, not the config's: a bitsandbytes checkpoint keeps its own.
        let baseWeights = trainer.model.baseWeights
        if baseWeights.kind != .f32 {
            // merge and generate rebuild this base (the same deterministic quantization) from the record
            try baseWeights.write(toDirectory: dir)
        }
        if let template = config.chatTemplate.map(BuiltinTemplate.source(of:)) ?? tokenizer.chatTemplate {
            try template.write(toFile: dir + "/chat_template.jinja", atomically: true, encoding: .utf8)
        }
        var tokenizerConfig: [String: Any] = [:]
        if let t = tokenizer.bosToken { tokenizerConfig["bos_token"] = t }
        if let t = tokenizer.eosToken { tokenizerConfig["eos_token"] = t }
        if let t = tokenizer.padToken { tokenizerConfig["pad_token"] = t }
        if let t = config.chatTemplate.map(BuiltinTemplate.source(of:)) ?? tokenizer.chatTemplate { tokenizerConfig["chat_template"] = t }
        try JSONSerialization.data(withJSONObject: tokenizerConfig, options: [.prettyPrinted, .sortedKeys])
            .write(to: URL(fileURLWithPath: dir + "/tokenizer_config.json"), options: .atomic)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(config).write(to: URL(fileURLWithPath: dir + "/loft_config.json"), options: .atomic)
        let metadata: [String: Any] = [
            "loft_version": Self.version,
            "base_model": config.baseModel,
            "base_model_sha256": (try? Self.fileHash(modelPath)) ?? NSNull(),
            "dataset_sha256": data.hash,
            "train_examples": data.train.count,
            "validation_examples": data.validation.count,
            "steps": state.step,
            "losses": state.losses,
            "eval_losses": state.evalLosses,
            "best_eval_loss": state.bestEvalLoss ?? NSNull(),
            "lora": ["r": config.lora.rank, "alpha": config.lora.alpha, "dropout": config.lora.dropout,
                     "target_modules": config.lora.targetModules, "use_rslora": config.lora.useRSLoRA, "use_dora": config.lora.useDoRA,
                     "modules_to_save": config.lora.modulesToSave],
            "learning_rate": config.learningRate, "lr_scheduler": config.lrScheduler.rawValue,
            "micro_batch_size": config.microBatchSize, "gradient_accumulation_steps": config.gradientAccumulationSteps,
            "sequence_len": config.sequenceLen, "seed": config.seed,
            "optimizer": config.optimizer,
            "peak_rss_bytes": ProcessMemory.peakResidentBytes(),
            "predicted_peak_bytes": memoryPlan?.peakBytes ?? NSNull(),
            "base_weights": ["kind": baseWeights.kind.rawValue, "double_quant": baseWeights.doubleQuant,
                             "blocksize": BnBQuantizer.blocksize, "compute_dtype": config.computeDType],
            "compute_precision": config.computePrecision.rawValue,
            "skipped_steps": state.lossScaler?.skippedSteps ?? 0,
        ]
        try JSONSerialization.data(withJSONObject: metadata, options: [.prettyPrinted, .sortedKeys])
            .write(to: URL(fileURLWithPath: dir + "/loft_run.json"), options: .atomic)
    }

    /// SHA-256 of a model file (of config.json for a directory).
    static func fileHash(_ path: String) throws -> String {
        var isDir: ObjCBool = false
        FileManager.default.fileExists(atPath: path, isDirectory: &isDir)
        let file = isDir.boolValue ? path + "/config.json" : path
        // Read, not mapped: a mapped file's pages count in the process's RSS,
        // so hashing a model through a map would add its size to the run's
        // recorded peak (measured: up to +90 MiB for SmolLM2's 94 MiB GGUF).
        guard let handle = FileHandle(forReadingAtPath: file) else {
            throw FormatError(file, "cannot be read to hash it; check its permissions")
        }
        defer { try? handle.close() }
        var hasher = SHA256()
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
            hasher.update([UInt8](chunk))
        }
        // The digest itself in hex (SHA256.hex would hash it a second time).
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }
}
