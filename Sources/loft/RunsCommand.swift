import ArgumentParser
import Foundation
import LoftRuns
import LoftTraining

struct RunsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "runs",
        abstract: "The run registry ($LOFT_HOME/loft.db, default ~/.loft): every train, eval and export.",
        subcommands: [RunsListCommand.self, RunsShowCommand.self, RunsCompareCommand.self, RunsRemoveCommand.self],
        defaultSubcommand: RunsListCommand.self)
}

struct RunsListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "The runs, newest first.")
    @Option(help: "Only this kind: train, eval or export.") var kind: String?
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let runs = try RunRegistry().runs(kind: kind)
        if json { return printJSON(runs.map(RunsFormat.object)) }
        if runs.isEmpty { return print("no runs yet in \(RunRegistry.home)/loft.db; `loft train CONFIG` records one") }
        print("ID".padding(toLength: 22, withPad: " ", startingAt: 0) + "KIND    STATUS   STEP        LOSS  STARTED           NAME")
        for r in runs {
            let step = r.lastStep.map { "\($0)" + (r.totalSteps.map { "/\($0)" } ?? "") } ?? "-"
            print(r.id.padding(toLength: 22, withPad: " ", startingAt: 0) + r.kind.padding(toLength: 8, withPad: " ", startingAt: 0)
                  + r.status.rawValue.padding(toLength: 8, withPad: " ", startingAt: 0) + step.leftPadded(6)
                  + (r.lastLoss.map { String(format: "%.4f", $0) } ?? "-").leftPadded(12) + "  "
                  + RunsFormat.date(r.startedAt ?? r.createdAt) + "  " + r.name)
        }
    }
}

struct RunsShowCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "One run: status, config, metrics, artifacts.")
    @Argument(help: "The run's id (or a unique prefix, or its name).") var id: String
    @Flag(help: "Print JSON (with every step's metrics).") var json = false

    func run() throws {
        let registry = try RunRegistry()
        let r = try registry.find(id)
        let points = try registry.metrics(r.id)
        let artifacts = try registry.artifacts(r.id)
        let evals = try registry.evalResults(r.id)
        if json {
            var o = RunsFormat.object(r)
            o["metrics"] = points.map { p in
                var m: [String: Any] = ["step": p.step, "time": p.time]
                for (k, _) in RunCharts.metrics { if let v = RunCharts.value(p, k) { m[k] = v } }
                return m
            }
            o["artifacts"] = artifacts.map { a -> [String: Any] in
                ["kind": a.kind, "path": a.path, "step": a.step.map { $0 as Any } ?? NSNull(), "bytes": a.bytes.map { $0 as Any } ?? NSNull()]
            }
            o["evals"] = evals.map { e -> [String: Any] in
                ["name": e.name, "metrics": e.metrics, "report": e.reportPath.map { $0 as Any } ?? NSNull()]
            }
            return printJSON(o)
        }
        print("\(r.id)  \(r.name)  (\(r.kind), \(r.status.rawValue))")
        if let e = r.error { print("  error: \(e)") }
        print("  host \(r.host ?? "?"), pid \(r.pid.map(String.init) ?? "?"), started \(r.startedAt.map(RunsFormat.date) ?? "-"), ended \(r.endedAt.map(RunsFormat.date) ?? "-")")
        if let b = r.baseModel { print("  base model: \(b)" + (r.baseModelSHA256.map { " (sha256 \($0.prefix(12))…)" } ?? "")) }
        if let d = r.datasetSHA256 { print("  dataset sha256: \(d.prefix(12))…") }
        if let o = r.outputDir { print("  output_dir: \(o)") }
        if let p = r.peakRSSBytes { print("  peak memory: \(MemoryPlan.format(p))") }
        if !points.isEmpty {
            let losses = points.compactMap(\.loss)
            print("  steps: \(points.last!.step)\(r.totalSteps.map { "/\($0)" } ?? "")  loss \(losses.first.map { String(format: "%.4f", $0) } ?? "-") → \(losses.last.map { String(format: "%.4f", $0) } ?? "-")  \(Sparkline.text(losses, width: 32))")
            let evalsAt = points.filter { $0.evalLoss != nil }
            if !evalsAt.isEmpty { print("  eval loss: " + evalsAt.map { String(format: "%d: %.4f", $0.step, $0.evalLoss!) }.joined(separator: ", ")) }
        }
        for e in evals { print("  eval \(e.name): " + e.metrics.sorted { $0.key < $1.key }.map { "\($0.key) \(String(format: "%.4g", $0.value))" }.joined(separator: ", ")) }
        for a in artifacts { print("  \(a.kind): \(a.path)" + (a.step.map { " (step \($0))" } ?? "")) }
    }
}

struct RunsCompareCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "compare",
        abstract: "Overlay runs' curves in one SVG and list the config keys that differ.")
    @Argument(help: "Two or more runs.") var runs: [String]
    @Option(help: "The metric to overlay: loss, eval_loss, lr, grad_norm, tokens_per_s.") var metric = "loss"
    @Option(help: "Where to write the SVG.") var out = "compare.svg"
    @Flag(help: "Print JSON.") var json = false

    func validate() throws {
        guard runs.count >= 2 else { throw ValidationError("give two or more runs to compare (`loft runs list` shows them)") }
        guard RunCharts.metrics.contains(where: { $0.key == metric }) else {
            throw ValidationError("--metric \(metric): use one of \(RunCharts.metrics.map(\.key).joined(separator: ", "))")
        }
    }

    func run() throws {
        let registry = try RunRegistry()
        let found = try runs.map { try registry.find($0) }
        let series = try found.map { (name: "\($0.name) (\($0.id.suffix(4)))", points: try registry.metrics($0.id)) }
        try RunCharts.overlaySVG(series, metric: metric).write(toFile: out, atomically: true, encoding: .utf8)
        let diff = ConfigDiff.differing(found.map { $0.configJSON ?? "{}" })
        if json {
            return printJSON(["svg": out, "runs": found.map(\.id),
                              "differing_keys": diff.map { ["key": $0.key, "values": $0.values] }])
        }
        print("wrote \(out) (\(metric) of \(found.count) runs)")
        if diff.isEmpty { print("the configs are the same") }
        for d in diff { print("  \(d.key): " + d.values.joined(separator: " | ")) }
    }
}

struct RunsRemoveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rm",
        abstract: "Forget a run (its registry entry; its files stay where they are).")
    @Argument(help: "The run's id (or a unique prefix, or its name).") var id: String
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let registry = try RunRegistry()
        let r = try registry.find(id)
        if r.status == .running, let pid = r.pid, ProcessIdentity.isAlive(pid: pid, start: r.processStart) {
            throw ValidationError("run \(r.id) is still running (pid \(pid)); stop it first (Ctrl-C in its terminal, or Stop in `loft ui`)")
        }
        try registry.remove(r.id)
        if json { printJSON(["removed": r.id]) } else { print("removed \(r.id) from the registry; its files in \(r.outputDir ?? "-") are kept") }
    }
}

enum RunsFormat {
    static func date(_ d: Date) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.dateFormat = "yyyy-MM-dd HH:mm"
        return f.string(from: d)
    }

    static func object(_ r: RunRecord) -> [String: Any] {
        var o: [String: Any] = ["id": r.id, "name": r.name, "kind": r.kind, "status": r.status.rawValue,
                                "created_at": r.createdAt.timeIntervalSince1970]
        if let v = r.startedAt { o["started_at"] = v.timeIntervalSince1970 }
        if let v = r.endedAt { o["ended_at"] = v.timeIntervalSince1970 }
        if let v = r.lastStep { o["step"] = v }
        if let v = r.lastLoss { o["loss"] = v }
        if let v = r.totalSteps { o["total_steps"] = v }
        if let v = r.outputDir { o["output_dir"] = v }
        if let v = r.baseModel { o["base_model"] = v }
        if let v = r.baseModelSHA256 { o["base_model_sha256"] = v }
        if let v = r.datasetSHA256 { o["dataset_sha256"] = v }
        if let v = r.host { o["host"] = v }
        if let v = r.pid { o["pid"] = v }
        if let v = r.peakRSSBytes { o["peak_rss_bytes"] = v }
        if let v = r.error { o["error"] = v }
        if let v = r.parentID { o["parent_id"] = v }
        if let c = r.configJSON, let v = try? JSONSerialization.jsonObject(with: Data(c.utf8)) { o["config"] = v }
        return o
    }
}
