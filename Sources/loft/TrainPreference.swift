import Foundation
import LoftHub
import LoftTraining

extension TrainCommand {
    /// `loft train` of a config with `rl:`: DPO, IPO, ORPO, KTO or SimPO.
    func trainPreference(_ cfg: TrainConfig) throws {
        let run = try PreferenceRun(config: cfg, resume: resume, overwrite: overwrite,
                                    downloadProgress: json ? nil : DownloadProgressLine().update)
        let objective = run.trainer.step.objective
        writeErr(run.device.note)
        writeErr("preference: \(objective.name) (TRL \(PreferenceConfig.trlVersion) definitions), reference: "
                 + (objective.usesReference ? (run.trainer.step.reference.kind == .adapterDisabled ? (cfg.preference?.baseAdapter.map { "the base with \($0) (the new adapter disabled)" } ?? "the base (adapter disabled)") : "the starting adapter \(cfg.preference?.startingAdapter ?? ""), frozen") : "none"))
        for w in run.data.warnings { writeErr("warning: \(w)") }
        writeErr("data: \(run.data.train.count) training and \(run.data.validation.count) validation \(objective.unpaired ? "examples" : "pairs")")
        if resume, let from = try run.trainer.resume() { writeErr("resuming from \(from)") }
        if let prepared = try run.prepareReferenceCache(progress: json ? nil : { done, total in
            FileHandle.standardError.write(Data("\rreference log-probs \(done)/\(total)".utf8))
        }) {
            writeErr(prepared.reused ? "reference log-probs: reused from the cache" : "\nreference log-probs: computed and cached in \(ReferenceCache.directory)")
        }
        try FileManager.default.createDirectory(atPath: run.config.outputDir, withIntermediateDirectories: true)
        let metrics = MetricsLog(path: run.config.outputDir + "/metrics.jsonl")
        let bar = ProgressBar(enabled: !json && isatty(STDERR_FILENO) != 0)
        let trainer = run.trainer
        func number(_ x: Double?) -> Any { (x ?? 0).isFinite ? x ?? 0 : NSNull() }
        trainer.onEvent = { e in
            switch e.kind {
            case .step:
                var line: [String: Any] = ["step": e.step, "loss": number(e.loss), "lr": e.learningRate ?? 0, "grad_norm": number(e.gradNorm),
                                           "pairs_per_s": e.pairsPerSecond ?? 0, "peak_rss_bytes": ProcessMemory.peakResidentBytes()]
                for (k, v) in e.metrics { line[k] = number(v) }
                if let s = e.lossScale { line["loss_scale"] = s; line["skipped"] = e.skipped }
                metrics.append(line)
                if json { printJSON(line.merging(["event": "step", "total": e.totalSteps]) { a, _ in a }) }
                else if bar.enabled {
                    bar.show(step: e.step, total: e.totalSteps, loss: e.loss ?? 0, lr: e.learningRate ?? 0, rate: e.pairsPerSecond ?? 0, eta: e.secondsRemaining ?? 0)
                }
                if !json && (e.step % cfg.loggingSteps == 0 || e.step == e.totalSteps) {
                    bar.log(String(format: "step %d/%d  loss %.4f  rewards/margins %.4f  rewards/accuracies %.2f  lr %.2e  %.2f pairs/s",
                                   e.step, e.totalSteps, e.loss ?? 0, e.metrics["rewards/margins"] ?? 0, e.metrics["rewards/accuracies"] ?? 0,
                                   e.learningRate ?? 0, e.pairsPerSecond ?? 0) + (e.skipped ? "  (skipped: inf/NaN gradient)" : ""))
                }
            case .eval:
                var line: [String: Any] = ["step": e.step, "eval_loss": number(e.loss)]
                for (k, v) in e.metrics { line["eval_" + k] = number(v) }
                metrics.append(line)
                if json { printJSON(line.merging(["event": "eval"]) { a, _ in a }) }
                else {
                    bar.log(String(format: "step %d  eval loss %.4f  eval rewards/accuracies %.2f  eval rewards/margins %.4f", e.step, e.loss ?? 0,
                                   e.metrics["rewards/accuracies"] ?? 0, e.metrics["rewards/margins"] ?? 0))
                }
            case .warning:
                metrics.append(["step": e.step, "warning": e.message ?? ""])
                if json { printJSON(["event": "warning", "step": e.step, "message": e.message ?? ""]) } else { bar.log("warning: \(e.message ?? "")") }
            case .checkpoint:
                if json { printJSON(["event": "checkpoint", "step": e.step, "path": e.path ?? ""]) } else { bar.log("saved \(e.path ?? "")") }
            case .done:
                bar.finish()
            }
        }
        Interrupt.onFirst { trainer.stopRequested = true }
        let state = try trainer.run()
        try run.saveOutputs(state: state)
        if json { printJSON(["event": "done", "steps": state.step, "output_dir": run.config.outputDir, "final_loss": state.losses.last ?? 0]) }
        else { writeErr("adapter written to \(run.config.outputDir)") }
    }
}
