import Foundation
import LoftRuns
import LoftTraining

/// How `loft train` records itself in the run registry and draws loss.svg.
enum TrainRecording {
    static func start(config cfg: TrainConfig, path: String, runID: String?, resume: Bool, totalSteps: Int) -> RunRecorder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let outputDir = URL(fileURLWithPath: cfg.outputDir).standardizedFileURL.path
        var start = RunRecorder.Start(name: URL(fileURLWithPath: outputDir).lastPathComponent)
        start.adoptID = runID
        start.configJSON = (try? encoder.encode(cfg)).map { String(decoding: $0, as: UTF8.self) }
        start.configPath = URL(fileURLWithPath: path).standardizedFileURL.path
        start.baseModel = cfg.baseModel
        start.outputDir = outputDir
        start.totalSteps = totalSteps
        start.command = CommandLine.arguments
        let recorder = RunRecorder(start, continueLatest: resume)
        if runID == nil { writeErr("run \(recorder.runID) (`loft runs show \(recorder.runID)`, `loft ui`)") }
        return recorder
    }

    static func writeChart(_ recorder: RunRecorder, config cfg: TrainConfig) {
        if let svg = recorder.writeLossSVG(to: cfg.outputDir, title: "\(URL(fileURLWithPath: cfg.outputDir).lastPathComponent): loss") {
            recorder.artifact(kind: "chart", path: URL(fileURLWithPath: svg).standardizedFileURL.path)
        }
    }

    static func finish(_ recorder: RunRecorder, run: TrainingRun, state: TrainerState, stopped: Bool) {
        let dir = URL(fileURLWithPath: run.config.outputDir).standardizedFileURL.path
        writeChart(recorder, config: run.config)
        recorder.artifact(kind: "adapter", path: dir + "/adapter_model.safetensors", step: state.step)
        recorder.update { r in
            r.datasetSHA256 = run.data.hash
            r.baseModelSHA256 = (try? JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/loft_run.json")))
                as? [String: Any])?["base_model_sha256"] as? String
        }
        recorder.finish(stopped ? .stopped : .done, peakRSSBytes: ProcessMemory.peakResidentBytes())
    }

    /// Records an export or merge around `body`: its output becomes an
    /// artifact of the job and of the train run whose adapter it used.
    static func job(kind: String, name: String, adapter: String?, output: String, _ body: () throws -> Void) throws {
        let out = URL(fileURLWithPath: output).standardizedFileURL.path
        var start = RunRecorder.Start(kind: kind, name: name)
        start.adoptID = ProcessInfo.processInfo.environment["LOFT_RUN_ID"]
        start.outputDir = out
        start.command = CommandLine.arguments
        let registry = try? RunRegistry()
        if let adapter, let registry {
            let dir = URL(fileURLWithPath: adapter).standardizedFileURL.path
            start.parentID = (try? registry.runs(kind: "train"))?.first { $0.outputDir == dir }?.id
        }
        let recorder = RunRecorder(start, registry: registry)
        do { try body() } catch {
            recorder.finish(.failed, error: "\(error)", peakRSSBytes: ProcessMemory.peakResidentBytes())
            throw error
        }
        recorder.artifact(kind: kind, path: out)
        if let parent = start.parentID {
            try? registry?.addArtifact(parent, Artifact(kind: kind, path: out, bytes: RunRecorder.size(out)))
        }
        recorder.finish(.done, peakRSSBytes: ProcessMemory.peakResidentBytes())
    }
}
