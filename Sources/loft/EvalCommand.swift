import ArgumentParser
import Foundation
import LoftData
import LoftEval
import LoftInference

struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Compare the base, each adapter and the previous adapter on held-out data, with verdicts.",
        discussion: """
        One model load: the base is the adapter-disabled pass and every adapter answers the same items \
        with the same prompts (greedy). Writes report.md, report.json, report.html and samples.jsonl to --out. \
        Exit status 2 when a gate fails (PoC gain below --min-gain, a regression against --previous, the \
        safety gate, or an adapter that was probably not applied). See docs/eval.md.
        """)

    @Argument(help: "The base model: a Hugging Face directory, a .gguf file, or a Hub id.")
    var model: String

    @Option(name: .customLong("adapter"), help: "An adapter to evaluate, NAME=DIR or DIR (named by its folder); repeat for several.")
    var adapters: [String] = []

    @Option(help: "The previous adapter's directory: each adapter is also compared with it (regression gate).")
    var previous: String?

    @Option(help: "Held-out rows: messages, sharegpt, alpaca, prompt/completion, multiple choice (question, choices, answer) or preference pairs.")
    var data: String?

    @Option(help: "An lm-evaluation-harness task YAML (dataset_path: json).")
    var task: String?

    @Option(help: "Comma-separated metrics (default: by the items' kind). Known: \(Metric.all.keys.sorted().joined(separator: ", ")).")
    var metrics: String?

    @Option(help: "The metric the verdicts use (default: the first metric).")
    var primary: String?

    @Option(help: "A regex that `contains` looks for in each answer instead of the reference.")
    var pattern: String?

    @Option(name: .customLong("max-tokens"), help: "Most tokens generated per answer.")
    var maxTokens = 256

    @Option(name: .customLong("batch-size"), help: "Requests per call to the engine (scores do not depend on it).")
    var batchSize = 8

    @Option(help: "Evaluate only the first N items.")
    var limit: Int?

    @Option(help: "Only these rows of --data, as a slice: 250: (from row 250 on), :50, 10:20 (rows held out of a training file with `split: train[:250]`).")
    var rows: String?

    @Option(name: .customLong("num-fewshot"), help: "Override the task's num_fewshot.")
    var numFewshot: Int?

    @Option(name: .customLong("min-gain"), help: "PoC: the adapter must beat the base by this many points on the primary metric.")
    var minGain = 5.0

    @Option(name: .customLong("max-regression"), help: "Regression gate: how many points an adapter may trail --previous.")
    var maxRegression = 0.0

    @Option(help: "Paired-bootstrap resamples for the 95% intervals.")
    var bootstrap = 1000

    @Option(help: "Seed of the bootstrap.")
    var seed: UInt64 = 0

    @Option(help: "β of the implicit reward for preference rows.")
    var beta = 0.1

    @Flag(help: "Also run the safety regression (refusals on the shipped harmful and benign prompts).")
    var safety = false

    @Option(name: .customLong("safety-margin"), help: "Safety gate: points a tuned model may lose in refusals of harmful prompts or gain in refusals of benign ones.")
    var safetyMargin = 5.0

    @Option(help: "An OpenAI-compatible API root for the pairwise judge, e.g. http://127.0.0.1:8000/v1.")
    var judge: String?

    @Option(name: .customLong("judge-model"), help: "The judge's model name.")
    var judgeModel: String?

    @Option(name: .customLong("judge-api-key-file"), help: "A file holding the judge's API key (or set LOFT_JUDGE_API_KEY).")
    var judgeAPIKeyFile: String?

    @Option(help: "Where the reports go.")
    var out = "outputs/eval"

    @Flag(help: "Replace a report already in --out.")
    var overwrite = false

    @Flag(help: "Print the results and verdicts as JSON on stdout.")
    var json = false

    func validate() throws {
        if (data == nil) == (task == nil) { throw ValidationError("give exactly one of --data and --task") }
        if batchSize < 1 { throw ValidationError("--batch-size must be at least 1") }
        if maxTokens < 1 { throw ValidationError("--max-tokens must be at least 1") }
        if bootstrap < 1 { throw ValidationError("--bootstrap must be at least 1") }
        if (judge == nil) != (judgeModel == nil) { throw ValidationError("--judge and --judge-model go together") }
        if adapters.isEmpty && previous == nil { throw ValidationError("give at least one --adapter (or --previous) to compare with the base") }
    }

    /// NAME=DIR pairs, names unique and not "base".
    func namedAdapters() throws -> [(name: String, directory: String)] {
        var out: [(name: String, directory: String)] = []
        for spec in adapters {
            var name: String, dir: String
            if let eq = spec.firstIndex(of: "="), !FileManager.default.fileExists(atPath: spec) {
                name = String(spec[..<eq]); dir = String(spec[spec.index(after: eq)...])
            } else {
                dir = spec; name = URL(fileURLWithPath: spec).standardizedFileURL.lastPathComponent
            }
            dir = (dir as NSString).expandingTildeInPath
            guard FileManager.default.fileExists(atPath: dir) else { throw CLIError("--adapter \(spec): the directory \(dir) does not exist") }
            if name == "base" || name == "previous" || name.isEmpty { throw CLIError("--adapter \(spec): `\(name)` is reserved; use NAME=DIR with another name") }
            if out.contains(where: { $0.name == name }) { throw CLIError("--adapter \(spec): two adapters are named `\(name)`; use NAME=DIR to tell them apart") }
            out.append((name, dir))
        }
        if let previous {
            let dir = (previous as NSString).expandingTildeInPath
            guard FileManager.default.fileExists(atPath: dir) else { throw CLIError("--previous: the directory \(dir) does not exist") }
            out.append(("previous", dir))
        }
        return out
    }

    func run() throws {
        let outURL = URL(fileURLWithPath: out)
        let reportFile = outURL.appendingPathComponent("report.json")
        if FileManager.default.fileExists(atPath: reportFile.path) && !overwrite {
            throw CLIError("\(out) already holds a report; pass --overwrite to replace it, or choose another --out")
        }
        let named = try namedAdapters()
        var options = EvalOptions()
        options.metrics = metrics.map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } } ?? []
        options.primaryMetric = primary
        options.maxTokens = maxTokens
        options.batchSize = batchSize
        options.bootstrap = Bootstrap(resamples: bootstrap, seed: seed)
        options.minGain = minGain
        options.maxRegression = maxRegression
        options.beta = beta
        options.previous = previous == nil ? nil : "previous"
        options.log = { writeErr($0 + "\n") }
        if let pattern {
            do { options.pattern = try NSRegularExpression(pattern: pattern) } catch {
                throw CLIError("--pattern: `\(pattern)` is not a valid regular expression")
            }
        }
        var judgeClient: JudgeClient?
        if let judge, let judgeModel {
            var key = ProcessInfo.processInfo.environment["LOFT_JUDGE_API_KEY"]
            if let file = judgeAPIKeyFile {
                guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { throw CLIError("--judge-api-key-file: cannot read \(file)") }
                key = text.trimmingCharacters(in: .whitespacesAndNewlines)
            }
            judgeClient = try JudgeClient(baseURL: judge, model: judgeModel, apiKey: key,
                                          cacheDirectory: outURL.appendingPathComponent("judge-cache").path)
            options.judge = judgeClient
        }
        if safety {
            var s = SafetyOptions()
            s.marginPoints = safetyMargin
            options.safety = s
        }

        let items: [EvalItem], source: String
        if let task {
            let t = try LMEvalTask.load(task, numFewshot: numFewshot, limit: limit)
            items = t.items; source = task
            if options.metrics.isEmpty && !t.metrics.isEmpty { options.metrics = t.metrics }
            if let m = t.maxGenerationTokens, maxTokens == 256 { options.maxTokens = m }
        } else {
            let slice = try rows.flatMap { try DatasetSpec(path: data!, split: "[\($0)]").rowSlice() }
            items = try EvalData.load(data!, limit: limit, rows: slice); source = data! + (rows.map { " rows \($0)" } ?? "")
        }

        // Recorded in the run registry (`loft runs`, `loft ui`) as an eval job,
        // under the train run whose adapter it scores.
        var result: EvalReport?
        try TrainRecording.job(kind: "eval", name: "eval " + outURL.lastPathComponent, adapter: named.first?.directory, output: out) {
            writeErr("loading \(model)\n")
            // The first adapter picks the base's stored form (an adapter trained on a quantized base runs on it).
            let lm = try LanguageModel(path: try localModel(model), adapter: named.first?.directory)
            let (evalModel, engine) = try lm.evalModel(adapters: named, batchSize: batchSize, log: { writeErr($0 + "\n") })
            defer { engine?.shutdown() }
            let report = try EvalRunner.run(model: evalModel, items: items, source: source, options: options)

            try FileManager.default.createDirectory(at: outURL, withIntermediateDirectories: true)
            try ReportJSON.write(report, to: outURL)
            try ReportMarkdown.render(report).write(to: outURL.appendingPathComponent("report.md"), atomically: true, encoding: .utf8)
            try ReportHTML.render(report).write(to: outURL.appendingPathComponent("report.html"), atomically: true, encoding: .utf8)
            result = report
        }
        guard let report = result else { return }

        if json {
            print(ReportJSON.text(ReportJSON.object(report)))
        } else {
            print(summary(report))
        }
        writeErr("wrote \(out)/report.html, report.md, report.json, samples.jsonl\n")
        if let judgeClient { writeErr("judge: \(judgeClient.calls) calls, \(judgeClient.cacheHits) answered from the cache\n") }
        if !report.passed { throw ExitCode(2) }
    }

    func summary(_ r: EvalReport) -> String {
        var lines: [String] = []
        let names = r.models.map(\.name)
        let width = max(12, r.metrics.map(\.name.count).max() ?? 0)
        lines.append("metric".padding(toLength: width, withPad: " ", startingAt: 0) + names.map { "  " + $0.padding(toLength: 12, withPad: " ", startingAt: 0) }.joined())
        for m in r.metrics {
            lines.append(m.name.padding(toLength: width, withPad: " ", startingAt: 0) + r.models.map { model in
                "  " + String(format: "%-12.4f", model.metrics[m.name] ?? .nan)
            }.joined())
        }
        for v in r.verdicts {
            var line = "\(v.name): PoC \(v.poc) (\(r.primaryMetric) \(String(format: "%+.2f", v.gainPoints)) points, 95% CI \(String(format: "%.2f", v.gainInterval.low))..\(String(format: "%.2f", v.gainInterval.high)))"
            if let reg = v.regression { line += ", vs previous \(reg)" }
            if let s = v.safety { line += ", safety \(s)" }
            if v.notApplied { line += ", PROBABLY NOT APPLIED" }
            lines.append(line)
        }
        for f in r.failedGates { lines.append("gate failed: \(f)") }
        return lines.joined(separator: "\n")
    }
}
