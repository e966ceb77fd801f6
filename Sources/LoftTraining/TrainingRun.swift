import Foundation
import LoftData
import LoftFormats
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
    public let data: PreparedDataset
    public let trainer: Trainer

    public static let version = "0.1.0"

    /// Everything that can be checked before training: the output directory,
    /// the data (with its template), the model and its shapes.
    public init(config: TrainConfig, resume: Bool, overwrite: Bool) throws {
        self.config = config
        let fm = FileManager.default
        let existing = (try? fm.contentsOfDirectory(atPath: config.outputDir))?.filter { !$0.hasPrefix(".") } ?? []
        if !existing.isEmpty && !resume && !overwrite {
            throw TrainingError("output_dir \(config.outputDir) already holds \(existing.count) file(s); pass --resume to continue that run, --overwrite to replace it, or set another output_dir")
        }
        if overwrite && !resume {
            for name in existing { try fm.removeItem(atPath: config.outputDir + "/" + name) }
        }
        tokenizer = try Tokenizer.load(source: config.baseModel)
        var options = DataOptions(sequenceLen: config.sequenceLen)
        options.trainOnInputs = config.trainOnInputs
        options.valSetSize = config.valSetSize
        options.seed = config.seed
        options.chatTemplate = config.chatTemplate
        options.trainOnEOS = config.trainOnEOS
        options.rolesToTrain = config.rolesToTrain
        options.skipBadRows = config.skipBadRows
        data = try DatasetBuilder(tokenizer: tokenizer, options: options).build(config.datasets)
        let (model, _) = try ModelLoader.load(config.baseModel, baseWeights: config.baseWeights)
        if model.config.vocabSize < tokenizer.vocabularySize {
            throw TrainingError("the tokenizer has \(tokenizer.vocabularySize) tokens but the model's vocabulary is \(model.config.vocabSize); they do not belong together")
        }
        try model.attachLoRA(config.lora, seed: config.seed)
        trainer = try Trainer(config: config, model: model, train: data.train, validation: data.validation)
    }

    /// Writes the final adapter (PEFT layout), the template it was trained
    /// with, the resolved config and the run's metadata into output_dir.
    public func saveOutputs(state: TrainerState) throws {
        let dir = config.outputDir
        try PEFTAdapter.save(trainer.model, config: config.lora, baseModel: config.baseModel, to: dir)
        if config.baseWeights.kind != .f32 {
            // merge and generate rebuild this base (the same deterministic quantization) from the record
            try config.baseWeights.write(toDirectory: dir)
        }
        if let template = config.chatTemplate ?? tokenizer.chatTemplate {
            try template.write(toFile: dir + "/chat_template.jinja", atomically: true, encoding: .utf8)
        }
        var tokenizerConfig: [String: Any] = [:]
        if let t = tokenizer.bosToken { tokenizerConfig["bos_token"] = t }
        if let t = tokenizer.eosToken { tokenizerConfig["eos_token"] = t }
        if let t = tokenizer.padToken { tokenizerConfig["pad_token"] = t }
        if let t = config.chatTemplate ?? tokenizer.chatTemplate { tokenizerConfig["chat_template"] = t }
        try JSONSerialization.data(withJSONObject: tokenizerConfig, options: [.prettyPrinted, .sortedKeys])
            .write(to: URL(fileURLWithPath: dir + "/tokenizer_config.json"), options: .atomic)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(config).write(to: URL(fileURLWithPath: dir + "/loft_config.json"), options: .atomic)
        let metadata: [String: Any] = [
            "loft_version": Self.version,
            "base_model": config.baseModel,
            "base_model_sha256": (try? Self.fileHash(config.baseModel)) ?? NSNull(),
            "dataset_sha256": data.hash,
            "train_examples": data.train.count,
            "validation_examples": data.validation.count,
            "steps": state.step,
            "losses": state.losses,
            "eval_losses": state.evalLosses,
            "best_eval_loss": state.bestEvalLoss ?? NSNull(),
            "lora": ["r": config.lora.rank, "alpha": config.lora.alpha, "dropout": config.lora.dropout,
                     "target_modules": config.lora.targetModules, "use_rslora": config.lora.useRSLoRA],
            "learning_rate": config.learningRate, "lr_scheduler": config.lrScheduler.rawValue,
            "micro_batch_size": config.microBatchSize, "gradient_accumulation_steps": config.gradientAccumulationSteps,
            "sequence_len": config.sequenceLen, "seed": config.seed,
            "base_weights": ["kind": config.baseWeights.kind.rawValue, "double_quant": config.baseWeights.doubleQuant,
                             "blocksize": BnBQuantizer.blocksize, "compute_dtype": config.computeDType],
        ]
        try JSONSerialization.data(withJSONObject: metadata, options: [.prettyPrinted, .sortedKeys])
            .write(to: URL(fileURLWithPath: dir + "/loft_run.json"), options: .atomic)
    }

    /// SHA-256 of a model file (of config.json for a directory).
    static func fileHash(_ path: String) throws -> String {
        var isDir: ObjCBool = false
        FileManager.default.fileExists(atPath: path, isDirectory: &isDir)
        let file = isDir.boolValue ? path + "/config.json" : path
        let mapped = try MappedFile(path: file)
        var hasher = SHA256()
        var offset = 0
        while offset < mapped.bytes.count {
            let end = min(mapped.bytes.count, offset + (1 << 20))
            hasher.update(Array(mapped.bytes[offset ..< end]))
            offset = end
        }
        return SHA256.hex(hasher.finalize())
    }
}
