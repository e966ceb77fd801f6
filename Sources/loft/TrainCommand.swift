import ArgumentParser
import Foundation
import LoftData
import LoftEval
import LoftHub
import LoftRuns
import LoftTraining

struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Fine-tune a LoRA adapter from a YAML config (Axolotl's keys).")

    @Argument(help: "The YAML config.")
    var config: String

    @Option(name: .customLong("set"), help: "Override a config key, e.g. --set learning_rate=1e-4 (repeatable).")
    var overrides: [String] = []

    @Flag(help: "Continue from the newest checkpoint in output_dir.")
    var resume = false

    @Flag(help: "Replace what output_dir holds.")
    var overwrite = false

    @Flag(help: "Print one JSON object per event instead of a progress bar.")
    var json = false

    @Flag(name: .customLong("skip-bad-rows"), help: "Count and skip malformed data rows instead of stopping at the first (skip_bad_rows: true).")
    var skipBadRows = false

    @Option(help: "Record into this run of the registry (how `loft ui` starts the runs it queued).")
    var runID: String?

    func run() throws {
        var recorder: RunRecorder?
        do { try train(&recorder) } catch {
            // The registry learns why the run ended (a queued run too, when its config did not load).
            if recorder == nil, let runID, let registry = try? RunRegistry() {
                try? registry.modify(runID) { $0.status = .failed; $0.endedAt = Date(); $0.error = "\(error)" }
            }
            recorder?.finish(.failed, error: "\(error)", peakRSSBytes: ProcessMemory.peakResidentBytes())
            throw error
        }
    }

    func train(_ recorder: inout RunRecorder?) throws {
        let cfg = try TrainConfig.load(path: config, overrides: overrides + (skipBadRows ? ["skip_bad_rows=true"] : []))
        if !cfg.ignoredKeys.isEmpty {
            writeErr("note: ignoring Axolotl keys Loft does not use: \(cfg.ignoredKeys.joined(separator: ", "))")
        }
        if cfg.preference != nil { return try trainPreference(cfg) }  // rl: dpo, ipo, orpo, kto, simpo (TrainPreference.swift)
        // Before anything large is loaded: does the plan fit what this machine has free?
        if !cfg.autoMicroBatch, let plan = try? MemoryPlanner(config: cfg).plan(), let available = ProcessMemory.availableBytes() {
            let budget = available + (ProcessMemory.residentBytes() ?? 0)
            if plan.peakBytes > budget {
                writeErr("warning: this run is planned to peak at \(MemoryPlan.format(plan.peakBytes)) but \(MemoryPlan.format(budget)) is available; it may swap or be killed. `loft plan \(config)` shows where the memory goes and what fits")
            }
        }
        let run = try TrainingRun(config: cfg, resume: resume, overwrite: overwrite,
                                  downloadProgress: json ? nil : DownloadProgressLine().update,
                                  dataProgress: json || isatty(2) == 0 ? nil : TokenCacheProgressLine().update)
        writeErr(run.device.note)
        if cfg.autoMicroBatch { writeErr("auto_micro_batch: micro_batch_size \(run.config.microBatchSize) fits the available memory") }
        for w in run.data.warnings { writeErr("warning: \(w)") }
        let trained = run.data.trainedTokens
        writeErr("data: \(run.data.train.count) training and \(run.data.validation.count) validation examples, \(trained) trained tokens")
        let record = TrainRecording.start(config: run.config, path: config, runID: runID, resume: resume,
                                          totalSteps: run.trainer.totalSteps)
        recorder = record
        if resume, let from = try run.trainer.resume() {
            writeErr("resuming from \(from)")
            record.resumed(at: run.trainer.state.step)
        }

        try FileManager.default.createDirectory(atPath: cfg.outputDir, withIntermediateDirectories: true)
        let metrics = MetricsLog(path: run.config.outputDir + "/metrics.jsonl")
        let bar = ProgressBar(enabled: !json && isatty(STDERR_FILENO) != 0)
        let trainer = run.trainer
        if !cfg.evalMetrics.isEmpty {
            if run.data.validation.isEmpty || (cfg.evalSteps ?? 0) <= 0 {
                writeErr("warning: eval_metrics needs a validation split (val_set_size) and eval_steps; they will not run")
            }
            trainer.generationMetrics = try TrainingEvaluation.generationMetrics(
                names: cfg.evalMetrics, validation: run.data.validation, tokenizer: run.tokenizer, maxNewTokens: cfg.evalMaxNewTokens)
        }
        trainer.onEvent = { e in
            switch e.kind {
            case .step:
                // fp16 only: the loss scale of this step and whether its update was skipped.
                let scaling: [String: Any] = e.lossScale.map { ["loss_scale": $0, "skipped": e.skipped] } ?? [:]
                // JSON has no inf/NaN (an fp16 step can produce them): null instead of a dropped line.
                func number(_ x: Double?) -> Any { (x ?? 0).isFinite ? x ?? 0 : NSNull() }
                record.step(MetricPoint(step: e.step, loss: e.loss, learningRate: e.learningRate, gradNorm: e.gradNorm,
                                        tokensPerSecond: e.tokensPerSecond))
                metrics.append(["step": e.step, "loss": number(e.loss), "lr": e.learningRate ?? 0, "grad_norm": number(e.gradNorm),
                                "tokens_per_s": e.tokensPerSecond ?? 0, "peak_rss_bytes": ProcessMemory.peakResidentBytes()]
                               .merging(scaling) { a, _ in a })
                if json {
                    printJSON(["event": "step", "step": e.step, "total": e.totalSteps, "loss": number(e.loss),
                               "lr": e.learningRate ?? 0, "tokens_per_s": e.tokensPerSecond ?? 0].merging(scaling) { a, _ in a })
                } else if bar.enabled {
                    bar.show(step: e.step, total: e.totalSteps, loss: e.loss ?? 0, lr: e.learningRate ?? 0,
                             rate: e.tokensPerSecond ?? 0, eta: e.secondsRemaining ?? 0,
                             sparkline: Sparkline.text(record.points.suffix(16).compactMap(\.loss)))
                }
                if !json && (e.step % cfg.loggingSteps == 0 || e.step == e.totalSteps) {
                    bar.log(String(format: "step %d/%d  loss %.4f  lr %.2e  grad-norm %.3f  %.0f tok/s", e.step, e.totalSteps,
                                   e.loss ?? 0, e.learningRate ?? 0, e.gradNorm ?? 0, e.tokensPerSecond ?? 0)
                            + (e.lossScale.map { String(format: "  loss-scale %g", $0) } ?? "") + (e.skipped ? "  (skipped: inf/NaN gradient)" : ""))
                }
            case .eval:
                record.evalLoss(step: e.step, loss: e.loss ?? .nan)
                // Generation metrics as eval_<name>, as transformers' Trainer names them.
                let generated = Dictionary(uniqueKeysWithValues: e.metrics.map { ("eval_" + $0.key, $0.value as Any) })
                metrics.append(["step": e.step, "eval_loss": e.loss ?? 0].merging(generated) { a, _ in a })
                if json { printJSON(["event": "eval", "step": e.step, "eval_loss": e.loss ?? 0].merging(generated) { a, _ in a }) }
                else {
                    bar.log(String(format: "step %d  eval loss %.4f", e.step, e.loss ?? 0)
                            + e.metrics.sorted { $0.key < $1.key }.map { "  \($0.key) " + String(format: "%.4f", $0.value) }.joined())
                }
            case .checkpoint:
                record.artifact(kind: "checkpoint", path: e.path ?? "", step: e.step)
                TrainRecording.writeChart(record, config: cfg)
                if json { printJSON(["event": "checkpoint", "step": e.step, "path": e.path ?? ""]) }
                else { bar.log("saved \(e.path ?? "")") }
            case .earlyStop:
                bar.log("early stopping: the eval loss has not improved for \(cfg.earlyStoppingPatience ?? 0) evaluations")
            case .done:
                bar.finish()
            }
        }
        Interrupt.onFirst { trainer.stopRequested = true }

        let state = try trainer.run()
        try run.saveOutputs(state: state)
        TrainRecording.finish(record, run: run, state: state, stopped: trainer.stopRequested && state.step < trainer.totalSteps)
        if json {
            printJSON(["event": "done", "steps": state.step, "output_dir": cfg.outputDir, "final_loss": state.losses.last ?? 0])
        } else {
            writeErr("adapter written to \(cfg.outputDir)")
        }
    }
}

/// Appends one JSON object per line; every metric of the run lands here.
final class MetricsLog: @unchecked Sendable {
    let handle: FileHandle?
    init(path: String) {
        if !FileManager.default.fileExists(atPath: path) { FileManager.default.createFile(atPath: path, contents: nil) }
        handle = FileHandle(forWritingAtPath: path)
        handle?.seekToEndOfFile()
    }
    func append(_ object: [String: Any]) {
        var o = object
        o["time"] = Date().timeIntervalSince1970
        guard let data = try? JSONSerialization.data(withJSONObject: o, options: [.sortedKeys]) else { return }
        handle?.write(data + Data("\n".utf8))
    }
}

/// A one-line bar on a terminal: step/total, loss, lr, tokens/s and ETA.
final class ProgressBar: @unchecked Sendable {
    let enabled: Bool
    private var drawn = false
    init(enabled: Bool) { self.enabled = enabled }

    func show(step: Int, total: Int, loss: Double, lr: Double, rate: Double, eta: Double, sparkline: String = "") {
        let width = 24
        let filled = total > 0 ? min(width, width * step / total) : 0
        let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
        let line = String(format: "\r%@ %d/%d  loss %.4f %@  lr %.1e  %.0f tok/s  ETA %@ ", bar, step, total, loss, sparkline, lr, rate,
                          Self.clock(eta))
        FileHandle.standardError.write(Data(line.utf8))
        drawn = true
    }

    func log(_ text: String) {
        if drawn { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
        writeErr(text)
    }

    func finish() { if drawn { FileHandle.standardError.write(Data("\n".utf8)); drawn = false } }

    static func clock(_ seconds: Double) -> String {
        guard seconds.isFinite, seconds >= 0 else { return "--:--" }
        let s = Int(seconds)
        return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) : String(format: "%d:%02d", s / 60, s % 60)
    }
}
