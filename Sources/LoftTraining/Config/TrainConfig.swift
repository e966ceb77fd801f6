import Foundation
import LoftData
import LoftModels
import LoftTensors
import Yams

/// A training run's configuration: the keys Axolotl users know, resolved and
/// checked before any compute.
public struct TrainConfig: Sendable, Equatable, Codable {
    public var baseModel: String = ""
    public var datasets: [DatasetSpec] = []
    public var valSetSize: Double = 0
    public var sequenceLen: Int = 2048
    public var samplePacking = false
    public var adapter = "lora"
    /// How the frozen base weights are stored (QLoRA: nf4 or fp4).
    public var baseWeights = BaseWeightFormat()
    /// bnb_4bit_compute_dtype as the file gives it (bf16, fp16, fp32), recorded in loft_run.json.
    public var computeDType = "fp32"
    /// What the GEMMs compute in (bf16: true, fp16: true, or a 4-bit base's
    /// bnb_4bit_compute_dtype); fp16 also turns on dynamic loss scaling.
    public var computePrecision = ComputePrecision.fp32
    public var lora = LoRAConfig()
    public var microBatchSize = 1
    public var gradientAccumulationSteps = 1
    public var numEpochs: Double = 1
    public var maxSteps: Int?
    public var learningRate: Double = 2e-4
    public var lrScheduler = LearningRateSchedule.cosine
    public var warmupSteps: Int?
    public var warmupRatio: Double?
    public var optimizer = "adamw_torch"
    public var weightDecay: Double = 0
    /// LoRA+: B's learning rate over A's (1 = plain LoRA).
    public var loraPlusLRRatio: Double = 1
    public var maxGradNorm: Double = 1
    public var seed: UInt64 = 42
    public var loggingSteps = 1
    public var evalSteps: Int?
    public var saveSteps: Int?
    public var saveTotalLimit: Int?
    public var earlyStoppingPatience: Int?
    /// Generation metrics run on the validation split at each eval step
    /// (`loft eval`'s names, e.g. [rougeL, contains]); the CLI supplies them
    /// to the trainer as `Trainer.generationMetrics`.
    public var evalMetrics: [String] = []
    /// What picks the best checkpoint: `eval_loss` (default) or one of `eval_metrics`.
    public var metricForBestModel: String?
    /// Default: false for losses and perplexity, true for everything else.
    public var greaterIsBetter: Bool?
    public var evalMaxNewTokens = 128
    public var gradientCheckpointing = false
    /// Pick micro_batch_size from the memory plan (the largest that fits).
    public var autoMicroBatch = false
    public var trainOnInputs = false
    /// A built-in template (chatml, alpaca, llama2, gemma) or Jinja source, instead of the tokenizer's.
    public var chatTemplate: String?
    public var trainOnEOS = TrainOnEOS.turn
    public var rolesToTrain = ["assistant"]
    public var skipBadRows = false
    public var outputDir = "./outputs/lora"
    /// Where to compute: cuda, cpu, or auto (the GPU when one is usable).
    public var device = ComputeDevice.auto
    /// Keys the file had that Loft accepts from Axolotl but does not act on.
    public var ignoredKeys: [String] = []
    /// Preference training (`rl:`); nil = SFT.
    public var preference: PreferenceConfig?

    public init() {}

    /// Every key Loft reads, with what it means (for suggestions and docs).
    public static let knownKeys: [String] = [
        "use_dora", "peft_use_dora", "lora_modules_to_save",
        "base_model", "datasets", "val_set_size", "sequence_len", "sample_packing", "adapter", "lora_r", "lora_alpha",
        "lora_dropout", "lora_target_modules", "lora_target_linear", "use_rslora", "micro_batch_size",
        "gradient_accumulation_steps", "num_epochs", "max_steps", "learning_rate", "lr_scheduler", "warmup_steps",
        "warmup_ratio", "optimizer", "weight_decay", "loraplus_lr_ratio", "max_grad_norm", "seed", "logging_steps", "eval_steps",
        "save_steps", "save_total_limit", "early_stopping_patience", "gradient_checkpointing", "auto_micro_batch", "train_on_inputs",
        "chat_template", "train_on_eos", "roles_to_train", "skip_bad_rows", "output_dir", "device",
        "eval_metrics", "metric_for_best_model", "greater_is_better",
    ] + quantizationKeys + preferenceKeys

    /// Axolotl keys that are accepted and listed as ignored (they matter to
    /// the Python stack, not to Loft, or belong to features not built yet).
    public static let ignoredAxolotlKeys: Set<String> = [
        "base_model_config", "model_type", "tokenizer_type", "trust_remote_code", "strict", "bf16", "tf32",
        "flash_attention", "sdp_attention", "xformers_attention", "wandb_project", "wandb_entity", "wandb_watch",
        "wandb_name", "wandb_log_model", "hub_model_id", "dataset_prepared_path", "deepspeed", "fsdp", "fsdp_config",
        "special_tokens", "tokens", "pad_to_sequence_len", "eval_sample_packing", "group_by_length", "local_rank",
        "logging_dir", "resume_from_checkpoint", "auto_resume_from_checkpoints", "debug", "evals_per_epoch",
        "saves_per_epoch", "load_in_8bit", "load_in_4bit", "lora_fan_in_fan_out",
        "is_llama_derived_model", "is_mistral_derived_model", "is_qwen_derived_model", "torch_compile",
        "gradient_checkpointing_kwargs", "early_stopping", "bnb_config_kwargs",
        "loss_watchdog_threshold", "loss_watchdog_patience", "s2_attention", "eval_table_size", "eval_max_new_tokens",
        "dataloader_num_workers", "dataloader_pin_memory", "dataloader_prefetch_factor", "eval_causal_lm_metrics",
    ]

    /// Reads a YAML file, applies `--set key=value` overrides, and reports
    /// every problem at once.
    public static func load(path: String, overrides: [String] = []) throws -> TrainConfig {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ConfigError(path, ["cannot read the file; check the path"])
        }
        let parsed: Any?
        do { parsed = try Yams.load(yaml: text) } catch {
            throw ConfigError(path, ["is not valid YAML: \(error)"])
        }
        guard var dict = parsed as? [String: Any] else { throw ConfigError(path, ["must be a YAML mapping of keys to values"]) }
        var problems: [String] = []
        for o in overrides {
            guard let eq = o.firstIndex(of: "=") else { problems.append("--set \(o): expected key=value"); continue }
            let key = String(o[..<eq]), raw = String(o[o.index(after: eq)...])
            dict[key] = (try? Yams.load(yaml: raw)).flatMap { $0 } ?? raw
        }
        var config = try parse(dict, source: path, problems: &problems)
        let base = URL(fileURLWithPath: path).deletingLastPathComponent()
        config.resolvePaths(relativeTo: base)
        if !problems.isEmpty { throw ConfigError(path, problems) }
        return config
    }

    static func parse(_ yamlDict: [String: Any], source: String, problems: inout [String]) throws -> TrainConfig {
        var c = TrainConfig()
        // Axolotl's examples leave many keys empty (`fp16:`): an empty value is unset.
        let dict = yamlDict.filter { !($0.value is NSNull) }
        func int(_ key: String) -> Int? {
            guard let v = dict[key] else { return nil }
            if let i = v as? Int { return i }
            if let d = v as? Double, d == d.rounded() { return Int(d) }
            problems.append("\(key): expected a whole number, got \(v)")
            return nil
        }
        func double(_ key: String) -> Double? {
            guard let v = dict[key] else { return nil }
            if let d = v as? Double { return d }
            if let i = v as? Int { return Double(i) }
            if let s = v as? String, let d = Double(s) { return d }
            problems.append("\(key): expected a number, got \(v)")
            return nil
        }
        func bool(_ key: String) -> Bool? {
            guard let v = dict[key] else { return nil }
            if let b = v as? Bool { return b }
            problems.append("\(key): expected true or false, got \(v)")
            return nil
        }
        func string(_ key: String) -> String? {
            guard let v = dict[key] else { return nil }
            if let s = v as? String { return s }
            problems.append("\(key): expected text, got \(v)")
            return nil
        }
        for key in dict.keys.sorted() where !knownKeys.contains(key) {
            if ignoredAxolotlKeys.contains(key) || key.hasPrefix("wandb_") {
                c.ignoredKeys.append(key)
            } else {
                let hint = nearest(key, in: knownKeys).map { "; did you mean '\($0)'?" } ?? ""
                problems.append("unknown key '\(key)'\(hint)")
            }
        }
        if let v = string("base_model") { c.baseModel = v } else if dict["base_model"] == nil { problems.append("base_model: missing; set it to a model directory or a .gguf file") }
        if let list = dict["datasets"] as? [Any] {
            for (i, item) in list.enumerated() {
                if let path = item as? String { c.datasets.append(DatasetSpec(path: path)); continue }
                guard let d = item as? [String: Any], let path = d["path"] as? String else {
                    problems.append("datasets[\(i)]: expected a mapping with 'path'"); continue
                }
                var spec = DatasetSpec(path: path, type: d["type"] as? String)
                for (k, v) in (d["variables"] as? [String: Any]) ?? [:] { spec.variables[k] = "\(v)" }
                for (k, v) in (d["field_map"] as? [String: Any]) ?? [:] { spec.fieldMap[k] = "\(v)" }
                if let roles = d["role_map"] as? [String: Any] { spec.roleMap = roles.mapValues { "\($0)" } }
                if let w = d["weight"] {
                    if let x = (w as? Double) ?? (w as? Int).map(Double.init), x > 0 { spec.weight = x }
                    else { problems.append("datasets[\(i)].weight: expected a positive number, got \(w)") }
                }
                // Hub datasets: config, split, revision, files.
                spec.name = d["name"].map { "\($0)" }
                spec.split = d["split"].map { "\($0)" }
                spec.revision = d["revision"].map { "\($0)" }
                if let f = d["data_files"] { spec.dataFiles = (f as? [Any])?.map { "\($0)" } ?? ["\(f)"] }
                // Axolotl's chat_template field and role mappings, old and new spellings.
                if let v = d["message_field_role"] as? String { spec.fieldMap["role"] = v }
                if let v = d["message_field_content"] as? String { spec.fieldMap["content"] = v }
                for (k, v) in (d["message_property_mappings"] as? [String: Any]) ?? [:] { spec.fieldMap[k] = "\(v)" }
                if let roles = d["roles"] as? [String: Any] {
                    var map = spec.roleMap ?? [:]
                    for (target, names) in roles { for name in (names as? [Any]) ?? [] { map["\(name)"] = target } }
                    spec.roleMap = map
                }
                for k in ["field_instruction", "field_input", "field_output", "field_system", "field_messages", "field_text"] {
                    if let v = d[k] as? String { spec.fieldMap[String(k.dropFirst(6))] = v }
                }
                let knownDatasetKeys: Set<String> = ["path", "type", "variables", "field_map", "role_map", "weight", "field_instruction", "field_input",
                                                     "field_output", "field_system", "field_messages", "field_text", "split", "name", "ds_type", "revision", "data_files",
                                                     "message_field_role", "message_field_content", "message_property_mappings", "roles"]
                for k in d.keys.sorted() where !knownDatasetKeys.contains(k) {
                    problems.append("datasets[\(i)].\(k): unknown key" + (nearest(k, in: Array(knownDatasetKeys)).map { "; did you mean '\($0)'?" } ?? ""))
                }
                c.datasets.append(spec)
            }
        } else if dict["datasets"] != nil {
            problems.append("datasets: expected a list of {path, type}")
        } else {
            problems.append("datasets: missing; add at least one, e.g. datasets: [{path: data.jsonl}]")
        }
        if let v = double("val_set_size") {
            if v < 0 { problems.append("val_set_size: must be ≥ 0 (a fraction below 1, or a count)") } else { c.valSetSize = v }
        }
        if let v = int("sequence_len") { if v < 8 { problems.append("sequence_len: \(v) is too short; use at least 8") } else { c.sequenceLen = v } }
        if let v = bool("sample_packing") { c.samplePacking = v }
        if let v = string("adapter") {
            if v == "lora" { c.adapter = v }
            else if v == "qlora" { c.adapter = v }
            else { problems.append("adapter: '\(v)' is not supported; use lora or qlora") }
        }
        if let v = int("lora_r") { if v < 1 { problems.append("lora_r: must be ≥ 1") } else { c.lora.rank = v } }
        if let v = double("lora_alpha") { c.lora.alpha = v } else { c.lora.alpha = Double(c.lora.rank) * 2 }
        if let v = double("lora_dropout") { if !(0 ..< 1).contains(v) { problems.append("lora_dropout: must be in [0, 1)") } else { c.lora.dropout = v } }
        if let v = bool("use_rslora") { c.lora.useRSLoRA = v }
        if let v = bool("use_dora") ?? bool("peft_use_dora") { c.lora.useDoRA = v }
        if let v = dict["lora_modules_to_save"] {
            let allowed = LlamaModel.fullyTrainableModules
            if let list = v as? [String], list.allSatisfy(allowed.contains) { c.lora.modulesToSave = list }
            else { problems.append("lora_modules_to_save: expected a list of \(allowed.joined(separator: " and ")) (trained in full), got \(v)") }
        }
        if bool("lora_target_linear") == true { c.lora.targetModules = LoRAConfig.allLinear }
        if let v = dict["lora_target_modules"] {
            if let s = v as? String, s == "all-linear" { c.lora.targetModules = LoRAConfig.allLinear }
            else if let list = v as? [String] {
                let bad = list.filter { !LoRAConfig.knownModules.contains($0) }
                if bad.isEmpty { c.lora.targetModules = list }
                else { problems.append("lora_target_modules: \(bad) are not supported; choose from \(LoRAConfig.knownModules.joined(separator: ", ")) or all-linear") }
            } else { problems.append("lora_target_modules: expected a list of module names or all-linear") }
        }
        if let v = int("micro_batch_size") { if v < 1 { problems.append("micro_batch_size: must be ≥ 1") } else { c.microBatchSize = v } }
        if let v = int("gradient_accumulation_steps") { if v < 1 { problems.append("gradient_accumulation_steps: must be ≥ 1") } else { c.gradientAccumulationSteps = v } }
        if let v = double("num_epochs") { if v <= 0 { problems.append("num_epochs: must be > 0") } else { c.numEpochs = v } }
        if let v = int("max_steps") { if v < 1 { problems.append("max_steps: must be ≥ 1") } else { c.maxSteps = v } }
        if let v = double("learning_rate") { if v <= 0 { problems.append("learning_rate: must be > 0") } else { c.learningRate = v } }
        if let v = string("lr_scheduler") {
            if let s = LearningRateSchedule(rawValue: v) { c.lrScheduler = s }
            else { problems.append("lr_scheduler: '\(v)' is not supported; use constant, linear or cosine") }
        }
        c.warmupSteps = int("warmup_steps")
        c.warmupRatio = double("warmup_ratio")
        if let v = string("optimizer") {
            if ["adamw_torch", "adamw", "adamw_torch_fused", "adamw_hf"].contains(v) { c.optimizer = "adamw_torch" }
            // Paging only moves GPU state to host memory under pressure; on the CPU it is the same optimizer.
            else if ["adamw_8bit", "paged_adamw_8bit", "adamw_bnb_8bit"].contains(v) { c.optimizer = "adamw_8bit" }
            else { problems.append("optimizer: '\(v)' is not supported yet; use adamw_torch or adamw_8bit") }
        }
        if let v = double("weight_decay") { c.weightDecay = v }
        if let v = string("device") {
            if let d = ComputeDevice(rawValue: v) { c.device = d }
            else { problems.append("device: '\(v)' is not supported; use cuda, cpu or auto") }
        }
        if let v = double("loraplus_lr_ratio") {
            if v <= 0 { problems.append("loraplus_lr_ratio: must be > 0 (LoRA+ papers use 16)") } else { c.loraPlusLRRatio = v }
        }
        if let v = double("max_grad_norm") { c.maxGradNorm = v }
        if let v = int("seed") { c.seed = UInt64(max(0, v)) }
        if let v = int("logging_steps") { c.loggingSteps = max(1, v) }
        c.evalSteps = int("eval_steps")
        c.saveSteps = int("save_steps")
        c.saveTotalLimit = int("save_total_limit")
        c.earlyStoppingPatience = int("early_stopping_patience")
        if let v = dict["eval_metrics"] {
            if let list = v as? [String] { c.evalMetrics = list }
            else if let one = v as? String { c.evalMetrics = one.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }
            else { problems.append("eval_metrics: expected a list of metric names, e.g. [rougeL, contains]") }
        }
        c.metricForBestModel = string("metric_for_best_model")
        c.greaterIsBetter = bool("greater_is_better")
        if let v = int("eval_max_new_tokens") { c.evalMaxNewTokens = max(1, v) }
        if let m = c.metricForBestModel, !["loss", "eval_loss"].contains(m),
           !c.evalMetrics.contains(m), !c.evalMetrics.contains(m.hasPrefix("eval_") ? String(m.dropFirst(5)) : m) {
            problems.append("metric_for_best_model: '\(m)' is neither eval_loss nor one of eval_metrics; add it to eval_metrics")
        }
        if let v = bool("gradient_checkpointing") { c.gradientCheckpointing = v }
        if let v = bool("auto_micro_batch") { c.autoMicroBatch = v }
        if let v = bool("train_on_inputs") { c.trainOnInputs = v }
        c.chatTemplate = string("chat_template")
        if let v = string("train_on_eos") {
            if let e = TrainOnEOS(rawValue: v) { c.trainOnEOS = e }
            else { problems.append("train_on_eos: '\(v)' is not one of \(TrainOnEOS.allCases.map(\.rawValue).joined(separator: ", "))") }
        }
        if let v = dict["roles_to_train"] {
            if let list = v as? [String], !list.isEmpty { c.rolesToTrain = list }
            else { problems.append("roles_to_train: expected a list of roles, e.g. [assistant]") }
        }
        if let v = bool("skip_bad_rows") { c.skipBadRows = v }
        if let v = string("output_dir") { c.outputDir = v }
        parseQuantization(dict, into: &c, problems: &problems)
        parsePreference(dict, into: &c, problems: &problems)
        return c
    }

    mutating func resolvePaths(relativeTo base: URL) {
        func resolve(_ p: String) -> String {
            if p.hasPrefix("/") || p.hasPrefix("~") { return (p as NSString).expandingTildeInPath }
            let candidate = base.appendingPathComponent(p).standardizedFileURL.path
            return FileManager.default.fileExists(atPath: candidate) ? candidate : p
        }
        baseModel = resolve(baseModel)
        if !outputDir.hasPrefix("/") { outputDir = base.appendingPathComponent(outputDir).standardizedFileURL.path }
        for i in datasets.indices { datasets[i].path = resolve(datasets[i].path) }
        if let dir = preference?.startingAdapter { preference?.startingAdapter = resolve(dir) }
        if let dir = preference?.baseAdapter { preference?.baseAdapter = resolve(dir) }
    }

    /// The known key closest to a misspelt one, if any is close.
    static func nearest(_ key: String, in keys: [String]) -> String? {
        func distance(_ a: String, _ b: String) -> Int {
            let a = Array(a), b = Array(b)
            var row = Array(0 ... b.count)
            for i in 1 ... max(a.count, 1) where !a.isEmpty {
                var prev = row[0]; row[0] = i
                for j in 1 ... max(b.count, 1) where !b.isEmpty {
                    let cur = row[j]
                    row[j] = min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] == b[j - 1] ? 0 : 1))
                    prev = cur
                }
            }
            return row[b.count]
        }
        let best = keys.map { ($0, distance(key, $0)) }.min { $0.1 < $1.1 }
        guard let best, best.1 <= max(2, key.count / 3) else { return nil }
        return best.0
    }
}

/// Everything wrong with a config, listed together.
public struct ConfigError: Error, CustomStringConvertible {
    public let file: String
    public let problems: [String]
    public init(_ file: String, _ problems: [String]) { self.file = file; self.problems = problems }
    public var description: String {
        "\(file) has \(problems.count) problem\(problems.count == 1 ? "" : "s"):\n" + problems.map { "  - \($0)" }.joined(separator: "\n")
    }
}

extension TrainConfig {
    /// Optimizer steps in the whole run, for an epoch of `microBatchesPerEpoch`
    /// micro-batches: max_steps, else the epochs' steps rounded up.
    func totalSteps(microBatchesPerEpoch: Int) -> Int {
        if let m = maxSteps { return m }
        let perEpoch = (microBatchesPerEpoch + gradientAccumulationSteps - 1) / gradientAccumulationSteps
        return max(1, Int((Double(perEpoch) * numEpochs).rounded(.up)))
    }

    /// warmup_steps, else warmup_ratio of `totalSteps` rounded up, else 0.
    func warmupSteps(totalSteps: Int) -> Int {
        if let w = warmupSteps { return w }
        if let r = warmupRatio { return Int((Double(totalSteps) * r).rounded(.up)) }
        return 0
    }
}
