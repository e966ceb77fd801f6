import ArgumentParser
import Foundation
import LoftData
import LoftTokenizers
import LoftTraining

struct DataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Check and preview training datasets.",
        subcommands: [DataCheckCommand.self, DataPreviewCommand.self])
}

/// Options shared by `data check` and `data preview`.
struct DataInputOptions: ParsableArguments {
    @Argument(help: "A training config (.yml/.yaml: its datasets, base_model and sequence_len) or a dataset file, directory or glob.")
    var input: String

    @Option(help: "Model (directory or .gguf) whose tokenizer and chat template to use; defaults to the config's base_model.")
    var model: String?

    @Option(name: .customLong("sequence-len"), help: "Sequence length (default: the config's, else 2048).")
    var sequenceLen: Int?

    @Option(help: "Dataset type (alpaca, sharegpt, messages, completion, prompt_completion, input_output); detected when omitted.")
    var type: String?

    @Option(name: .customLong("var"), help: "A {{placeholder}} value, name=value (repeatable).")
    var variables: [String] = []

    @Option(name: .customLong("chat-template"), help: "Built-in template for models without one: chatml, alpaca, llama2 or gemma.")
    var chatTemplate: String?

    @Flag(name: .customLong("train-on-inputs"), help: "Train on every message, not only the assistant's.")
    var trainOnInputs = false

    struct Resolved {
        var specs: [DatasetSpec]
        var model: String?
        var options: DataOptions
    }

    func resolve() throws -> Resolved {
        var specs: [DatasetSpec]
        var model = self.model
        var options = DataOptions()
        let lower = input.lowercased()
        if lower.hasSuffix(".yml") || lower.hasSuffix(".yaml") {
            let config = try TrainConfig.load(path: input)
            specs = config.datasets
            if model == nil, !config.baseModel.isEmpty { model = config.baseModel }
            options.sequenceLen = config.sequenceLen
            options.trainOnInputs = config.trainOnInputs
            options.valSetSize = config.valSetSize
            options.seed = config.seed
            options.skipBadRows = config.skipBadRows
            options.chatTemplate = config.chatTemplate
        } else {
            specs = [DatasetSpec(path: input)]
        }
        var vars: [String: String] = [:]
        for v in variables {
            guard let eq = v.firstIndex(of: "=") else { throw CLIError("--var \(v): expected name=value, e.g. --var name=Loft") }
            vars[String(v[..<eq])] = String(v[v.index(after: eq)...])
        }
        for i in specs.indices {
            if let type { specs[i].type = type }
            specs[i].variables.merge(vars) { $1 }
        }
        if let sequenceLen {
            guard sequenceLen > 0 else { throw CLIError("--sequence-len must be positive") }
            options.sequenceLen = sequenceLen
        }
        if trainOnInputs { options.trainOnInputs = true }
        if let chatTemplate { options.chatTemplate = chatTemplate }
        return Resolved(specs: specs, model: model, options: options)
    }
}

struct DataCheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Read datasets and report format, rows, bad rows, token lengths, truncation, trained share and packing efficiency.",
        discussion: "Without a model (no --model and no base_model in the config) only the format, rows and bad rows are reported.")

    @OptionGroup var input: DataInputOptions
    @Flag(help: "Print JSON.") var json = false
    @Flag(name: .customLong("skip-bad-rows"), help: "Pass when training would skip the bad rows (as `skip_bad_rows: true` or `loft train --skip-bad-rows`); without it, any bad row fails the check.")
    var skipBadRows = false

    func run() throws {
        var r = try input.resolve()
        if skipBadRows { r.options.skipBadRows = true }
        /// Bad rows fail the check exactly when training would refuse them.
        func badRowProblem(_ s: DatasetStats) -> String? {
            guard s.badRows > 0, !r.options.skipBadRows else { return nil }
            return "\(s.path): \(s.badRows) bad row\(s.badRows == 1 ? "" : "s") (\(s.badRowSummary)); first: \(s.badRowErrors.first ?? ""); training refuses them: fix them, or skip them with --skip-bad-rows (skip_bad_rows: true in the config)"
        }
        var report: [[String: Any]] = []
        var warnings: [String] = []
        var problems: [String] = []
        var packing: [String: Any] = [:]
        // Preference data is detected and reported, not tokenized.
        var trainable: [DatasetSpec] = []
        var scanned: [DatasetStats] = []
        for spec in r.specs {
            let s = try DatasetBuilder.scan(spec, options: r.options)
            if s.format == "dpo" || s.format == "kto" {
                if let p = badRowProblem(s) { problems.append(p) }
                // Trained with `rl:` (DataPreference.swift): prompt, chosen and rejected token statistics.
                let (d, w) = try PreferenceDataReport.check(spec, model: r.model, options: r.options)
                report.append(d)
                warnings += w
            } else {
                trainable.append(spec)
                scanned.append(s)
            }
        }
        if let model = r.model, !trainable.isEmpty {
            let tok = try Tokenizer.load(source: model)
            var o = r.options
            o.skipBadRows = true
            o.refuseOnProblems = false
            o.valSetSize = 0
            let built = try DatasetBuilder(tokenizer: tok, options: o).build(trainable)
            for s in built.stats { report.append(describe(s, sequenceLen: o.sequenceLen)) }
            warnings += built.warnings
            problems += built.stats.compactMap(badRowProblem)
            problems += built.problems.map(\.description)
            let lengths = built.train.map(\.ids.count)
            let bins = Packing.bestFitDecreasing(lengths: lengths, capacity: o.sequenceLen)
            packing = ["bins": bins.count, "examples": lengths.count,
                       "efficiency": Packing.efficiency(lengths: lengths, bins: bins, capacity: o.sequenceLen)]
        } else if r.model == nil {
            for (spec, s) in zip(trainable, scanned) {
                report.append(describe(s, sequenceLen: nil))
                if let p = badRowProblem(s) { problems.append(p) }
                if !s.unfilledPlaceholders.isEmpty {
                    warnings.append("\(spec.path): unfilled placeholders \(s.unfilledPlaceholders.map { "{{\($0)}}" }.joined(separator: ", ")); set them with `variables:` in the dataset entry (or --var name=value)")
                }
            }
        }
        if json {
            printJSON(["datasets": report, "warnings": warnings, "problems": problems, "packing": packing,
                       "sequence_len": r.options.sequenceLen, "model": r.model ?? NSNull()])
            if !problems.isEmpty { throw ExitCode(1) }
            return
        }
        for d in report {
            print(d["path"] as? String ?? "")
            print("  format: \(d["format"] ?? "")   rows: \(d["rows"] ?? 0)   bad rows: \(d["bad_rows"] ?? 0)")
            for t in (d["bad_rows_by_reason"] as? [[String: Any]]) ?? [] {
                let places = (t["rows"] as? [[String: Any]]) ?? []
                let rows = places.map { "\($0["row"] ?? "")" }.joined(separator: ", ")
                let count = t["count"] as? Int ?? 0
                print("    \(count) × \(t["reason"] ?? "") (\(places.count == 1 ? "row" : "rows") \(rows)\(count > places.count ? ", …" : "")): \(t["first"] ?? "")")
            }
            if let l = d["tokens"] as? [String: Any] {
                print("  tokens per row: p50 \(l["p50"] ?? 0)  p95 \(l["p95"] ?? 0)  p99 \(l["p99"] ?? 0)  max \(l["max"] ?? 0)")
                print(String(format: "  at sequence_len %d: %.1f%% truncated or dropped; recommended sequence_len: %d",
                             r.options.sequenceLen, 100 * ((d["truncated_share"] as? Double) ?? 0), (d["recommended_sequence_len"] as? Int) ?? 0))
                print(String(format: "  trained tokens: %.1f%% of %d", 100 * ((d["trained_token_share"] as? Double) ?? 0), (d["total_tokens"] as? Int) ?? 0))
            }
        }
        if let e = packing["efficiency"] as? Double {
            print(String(format: "packing at %d tokens: %d examples into %d bins, efficiency %.1f%%", r.options.sequenceLen,
                         packing["examples"] as? Int ?? 0, packing["bins"] as? Int ?? 0, 100 * e))
        } else if r.model == nil {
            print("(no model: give --model for token statistics)")
        }
        for w in warnings { print("warning: \(w)") }
        for p in problems { print("problem: \(p)") }
        // Problems are what training would refuse: a failing status for scripts and CI.
        if !problems.isEmpty { throw ExitCode(1) }
    }

    func describe(_ s: DatasetStats, sequenceLen: Int?) -> [String: Any] {
        var d: [String: Any] = ["path": s.path, "files": s.files, "format": s.format, "rows": s.rows, "bad_rows": s.badRows,
                                "bad_row_errors": s.badRowErrors, "unfilled_placeholders": s.unfilledPlaceholders,
                                "bad_rows_by_reason": s.badRowReasons.map { t -> [String: Any] in
                                    ["reason": t.reason.rawValue, "count": t.count, "first": t.first,
                                     "rows": t.rows.map { ["file": $0.file, "row": $0.row] as [String: Any] }]
                                }]
        if sequenceLen != nil {
            d["examples"] = s.examples
            d["tokens"] = ["p50": s.lengths.p50, "p95": s.lengths.p95, "p99": s.lengths.p99, "max": s.lengths.max, "mean": s.lengths.mean]
            d["truncated"] = s.truncated
            d["dropped"] = s.dropped
            d["truncated_share"] = s.truncatedShare
            d["recommended_sequence_len"] = s.recommendedSequenceLen
            d["trained_token_share"] = s.trainedTokenShare
            d["total_tokens"] = s.totalTokens
            d["fully_masked_rows"] = s.fullyMasked
        }
        return d
    }
}

struct DataPreviewCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "preview",
        abstract: "Show rows as the model sees them: the rendered text with trained spans marked, and the token/label table.",
        discussion: "Trained text is green on a terminal, between ⟦ and ⟧ otherwise.")

    @OptionGroup var input: DataInputOptions
    @Option(help: "Rows to show per dataset.") var rows = 3
    @Flag(name: .customLong("no-table"), help: "Leave out the token/label table.") var noTable = false
    @Flag(help: "Mark trained spans with ⟦…⟧ even on a terminal.") var plain = false

    func run() throws {
        let r = try input.resolve()
        guard let model = r.model else {
            throw CLIError("data preview needs a tokenizer: give --model (a model directory or .gguf), or a config with base_model")
        }
        let tok = try Tokenizer.load(source: model)
        let builder = try DatasetBuilder(tokenizer: tok, options: r.options)
        let colour = !plain && isatty(1) != 0
        let (open, close) = colour ? ("\u{1B}[32m", "\u{1B}[0m") : ("⟦", "⟧")
        for spec in r.specs {
            if PreferenceDataReport.isPreference(spec) {
                try PreferenceDataReport.preview(spec, tokenizer: tok, options: r.options, rows: max(1, rows), open: open, close: close, table: !noTable)
                continue
            }
            for (origin, ex) in try builder.preview(spec, rows: max(1, rows)) {
                print("── \(origin.file) row \(origin.row): \(ex.ids.count) tokens, \(ex.trainedTokenCount) trained")
                // Runs of trained / untrained tokens, each decoded as a whole.
                var text = ""
                var k = 0
                while k < ex.ids.count {
                    let trained = ex.labels[k] >= 0
                    var j = k
                    while j < ex.ids.count && (ex.labels[j] >= 0) == trained { j += 1 }
                    let piece = tok.decode(ex.ids[k..<j].map(Int.init))
                    text += trained ? open + piece + close : piece
                    k = j
                }
                print(text)
                if !noTable {
                    print(" index       id    label  token")
                    for (i, (id, label)) in zip(ex.ids, ex.labels).enumerated() {
                        let s = tok.decode([Int(id)]).debugDescription
                        print(String(format: "%6d %8d %8d  ", i, id, label) + s)
                    }
                }
                print("")
            }
        }
    }
}
