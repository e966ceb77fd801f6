import Foundation
import LoftFormats
import LoftModels
import LoftTensors

/// Where a run stands, saved with every checkpoint so `--resume` continues
/// exactly: the optimizer step, the position in the data plan, the losses.
public struct TrainerState: Codable, Sendable, Equatable {
    public var step = 0
    public var epoch = 0
    /// Micro-batches of the current epoch's plan already consumed.
    public var cursor = 0
    public var losses: [Double] = []
    public var evalLosses: [String: Double] = [:]
    public var bestEvalLoss: Double?
    public var bestStep: Int?
    /// The value of metric_for_best_model at bestStep (eval loss by default).
    public var bestMetric: Double?
    public var evalsWithoutImprovement = 0
    /// fp16's loss scaler (scale, clean-step counter, skips); nil for bf16/fp32 runs.
    public var lossScaler: LossScaler?
    public init() {}

    /// Optimizer updates actually taken: steps minus those the loss scaler skipped.
    public var optimizerSteps: Int { step - (lossScaler?.skippedSteps ?? 0) }
}

/// Checkpoints as directories `checkpoint-<step>` holding the adapter (PEFT
/// form), the optimizer moments and the trainer state. Each is written into
/// a temporary directory and renamed into place, so a crash mid-write never
/// leaves a half checkpoint where the last good one was.
public enum Checkpoint {
    public static func save(model: LlamaModel, optimizer: AdapterOptimizer, state: TrainerState, lora: LoRAConfig,
                            baseModel: String, outputDir: String) throws -> String {
        // The step's freed activations wait in the buffer pool for the next
        // step; writing the checkpoint needs memory of its own, so they go
        // back to the kernel first instead of adding to the peak.
        CPUBufferPool.shared.releaseAll()
        let fm = FileManager.default
        let final = outputDir + "/checkpoint-\(state.step)"
        let temp = outputDir + "/.checkpoint-\(state.step).partial"
        try? fm.removeItem(atPath: temp)
        try fm.createDirectory(atPath: temp, withIntermediateDirectories: true)
        try PEFTAdapter.save(model, config: lora, baseModel: baseModel, to: temp)
        var writer = SafetensorsWriter(metadata: ["step": "\(optimizer.step)"])
        for p in optimizer.parameters {
            if let q = p.quantizedMoments {
                // The quantized state itself (codes and block absmax), so a resume continues bit for bit.
                try addQuantized(q.m, name: p.name + ".exp_avg", to: &writer)
                try addQuantized(q.v, name: p.name + ".exp_avg_sq", to: &writer)
                continue
            }
            try writer.add(name: p.name + ".exp_avg", shape: p.moment1.shape, floats: optimizer.backend.download(p.moment1))
            try writer.add(name: p.name + ".exp_avg_sq", shape: p.moment2.shape, floats: optimizer.backend.download(p.moment2))
        }
        try writer.write(to: temp + "/optimizer.safetensors")
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(state).write(to: URL(fileURLWithPath: temp + "/trainer_state.json"), options: .atomic)
        if fm.fileExists(atPath: final) { try fm.removeItem(atPath: final) }
        try fm.moveItem(atPath: temp, toPath: final)
        return final
    }

    /// The newest complete checkpoint in `outputDir`, if any.
    public static func latest(in outputDir: String) -> String? {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: outputDir)) ?? []
        let steps = names.compactMap { n -> Int? in
            guard n.hasPrefix("checkpoint-") else { return nil }
            return Int(n.dropFirst("checkpoint-".count))
        }
        return steps.max().map { outputDir + "/checkpoint-\($0)" }
    }

    /// Restores adapter weights, optimizer moments and trainer state.
    /// The newest checkpoint in `config`'s output_dir restored into `model`
    /// and `optimizer` (nil when there is none): what `--resume` does for
    /// every trainer. A checkpoint of a run without fp16 resumed with fp16
    /// gets a fresh loss scaler.
    static func resumeLatest(_ config: TrainConfig, model: LlamaModel, optimizer: AdapterOptimizer) throws -> (state: TrainerState, dir: String)? {
        guard let dir = latest(in: config.outputDir) else { return nil }
        var state = try restore(dir, model: model, optimizer: optimizer)
        if config.computePrecision == .fp16 && state.lossScaler == nil { state.lossScaler = LossScaler() }
        return (state, dir)
    }

    public static func restore(_ dir: String, model: LlamaModel, optimizer: AdapterOptimizer) throws -> TrainerState {
        let b = model.backend
        let adapter = try SafetensorsCheckpoint(path: dir + "/adapter_model.safetensors")
        let moments = try SafetensorsCheckpoint(path: dir + "/optimizer.safetensors")
        for p in optimizer.parameters {
            b.copy(b.upload(try adapter.floats(named: p.name), shape: p.value.shape), into: p.value)
            if let q = p.quantizedMoments {
                try restoreQuantized(q.m, name: p.name + ".exp_avg", from: moments, dir: dir)
                try restoreQuantized(q.v, name: p.name + ".exp_avg_sq", from: moments, dir: dir)
                continue
            }
            if moments.info(named: p.name + ".exp_avg") == nil && moments.info(named: p.name + ".exp_avg.codes") != nil {
                throw FormatError(dir + "/optimizer.safetensors", "holds 8-bit moments for \(p.name) but the config's optimizer keeps f32 moments; resume with optimizer: adamw_8bit, or start a new run")
            }
            b.copy(b.upload(try moments.floats(named: p.name + ".exp_avg"), shape: p.value.shape), into: p.moment1)
            b.copy(b.upload(try moments.floats(named: p.name + ".exp_avg_sq"), shape: p.value.shape), into: p.moment2)
        }
        optimizer.parametersReplaced()
        guard let data = FileManager.default.contents(atPath: dir + "/trainer_state.json") else {
            throw FormatError(dir + "/trainer_state.json", "missing; the checkpoint is incomplete")
        }
        let state = try JSONDecoder().decode(TrainerState.self, from: data)
        optimizer.restore(step: state.optimizerSteps)
        return state
    }

    static func addQuantized(_ q: BlockwiseQuantizedVector, name: String, to writer: inout SafetensorsWriter) throws {
        try writer.add(name: name + ".codes", dtype: .u8, shape: [q.count],
                       bytes: UnsafeRawBufferPointer(start: q.codes.pointer, count: q.count))
        try writer.add(name: name + ".absmax", shape: [q.blockCount], floats: q.absmax.toArray())
    }

    static func restoreQuantized(_ q: BlockwiseQuantizedVector, name: String, from file: SafetensorsCheckpoint, dir: String) throws {
        let path = dir + "/optimizer.safetensors"
        guard let codes = file.tensor(named: name + ".codes"), let absmax = file.tensor(named: name + ".absmax") else {
            if file.info(named: name) != nil {
                throw FormatError(path, "holds f32 moments for \(name) but the config's optimizer is adamw_8bit; resume with the optimizer the run started with, or start a new run")
            }
            throw FormatError(path, "\(name).codes or .absmax is missing; the checkpoint is incomplete")
        }
        guard codes.dtype == .u8, codes.elementCount == q.count, absmax.elementCount == q.blockCount else {
            throw FormatError(path, "\(name): 8-bit state of \(codes.elementCount) \(codes.dtype) codes and \(absmax.elementCount) blocks does not fit a parameter of \(q.count) elements; the checkpoint belongs to another config")
        }
        if q.count > 0 { q.codes.pointer.copyMemory(from: codes.bytes.baseAddress!, byteCount: q.count) }
        let values = absmax.floats()
        values.withUnsafeBufferPointer { q.absmax.floats.update(from: $0.baseAddress!, count: values.count) }
    }

    /// Deletes the oldest checkpoints beyond `limit`, never the best one.
    public static func prune(_ outputDir: String, limit: Int, keep best: Int?) {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: outputDir)) ?? []
        let steps = names.compactMap { n -> Int? in n.hasPrefix("checkpoint-") ? Int(n.dropFirst("checkpoint-".count)) : nil }.sorted()
        var excess = steps.count - limit
        for s in steps where excess > 0 && s != best {
            try? FileManager.default.removeItem(atPath: outputDir + "/checkpoint-\(s)")
            excess -= 1
        }
    }
}
