import Foundation
import LoftData
import LoftTokenizers

/// `loft data check` and `preview` for preference datasets (pairs and KTO rows).
enum PreferenceDataReport {
    /// A preference dataset's report: layout, rows, bad rows, and with a model the token
    /// lengths, prompts dropped and completions cut at sequence_len.
    static func check(_ spec: DatasetSpec, model: String?, options: DataOptions) throws -> (report: [String: Any], warnings: [String]) {
        guard let model else {
            let s = try DatasetBuilder.scan(spec)
            return (["path": s.path, "files": s.files, "format": s.format + " (preference data; give --model for token statistics)", "rows": s.rows,
                     "bad_rows": s.badRows, "bad_row_errors": s.badRowErrors], [])
        }
        var o = options
        o.skipBadRows = true
        o.refuseOnProblems = false
        let builder = try PreferenceDatasetBuilder(tokenizer: try Tokenizer.load(source: model), options: o)
        let (examples, _, s) = try builder.buildOne(spec)
        var warnings: [String] = []
        if s.truncated > 0 { warnings.append("\(spec.path): sequence_len \(o.sequenceLen) cuts the completion of \(s.truncated) rows; about \(s.recommendedSequenceLen) keeps 95% whole") }
        if s.dropped > 0 { warnings.append("\(spec.path): \(s.dropped) rows are dropped: the prompt alone fills sequence_len \(o.sequenceLen)") }
        let kto = examples.contains { $0.label != nil }
        let total = examples.reduce(0) { $0 + $1.totalTokens }
        let completion = examples.reduce(0) { $0 + $1.chosen.count + $1.rejected.count }
        let good = max(1, s.rows - s.badRows)
        return (["path": s.path, "files": s.files, "format": (kto ? "kto" : "dpo") + " (\(s.layout))", "rows": s.rows, "examples": s.examples,
                 "bad_rows": s.badRows, "bad_row_errors": s.badRowErrors, "dropped": s.dropped, "truncated": s.truncated,
                 "prompt_truncated": s.promptTruncated, "truncated_share": Double(s.truncated + s.dropped) / Double(good),
                 "trained_token_share": total > 0 ? Double(completion) / Double(total) : 0, "total_tokens": total, "recommended_sequence_len": s.recommendedSequenceLen,
                 "desirable": kto ? examples.filter { $0.label == true }.count as Any : NSNull(),
                 "tokens": ["p50": s.lengths.p50, "p95": s.lengths.p95, "p99": s.lengths.p99, "max": s.lengths.max, "mean": s.lengths.mean],
                 "prompt_tokens_mean": examples.isEmpty ? 0 : Double(examples.reduce(0) { $0 + $1.prompt.count }) / Double(examples.count)],
                warnings)
    }

    /// The first rows as the model sees them: prompt (untrained), then each completion (trained) marked.
    static func preview(_ spec: DatasetSpec, tokenizer: Tokenizer, options: DataOptions, rows: Int, open: String, close: String, table: Bool) throws {
        var o = options
        o.maxRows = rows
        o.refuseOnProblems = false
        let (examples, origins, _) = try PreferenceDatasetBuilder(tokenizer: tokenizer, options: o).buildOne(spec)
        for (e, origin) in zip(examples, origins) {
            let kind = e.label.map { $0 ? "desirable" : "undesirable" }
            print("── \(origin.file) row \(origin.row): prompt \(e.prompt.count) tokens, " + (kind.map { "completion (\($0)) \(e.chosen.count)" }
                  ?? "chosen \(e.chosen.count), rejected \(e.rejected.count)") + " tokens; completions are trained, the prompt is not")
            let prompt = tokenizer.decode(e.prompt.map(Int.init))
            print("prompt:   " + prompt)
            for (name, ids) in [(kind == nil ? "chosen:   " : "completion:", e.chosen)] + (kind == nil ? [("rejected: ", e.rejected)] : []) {
                print(name + " " + open + tokenizer.decode(ids.map(Int.init)) + close)
                if table {
                    print(" index       id  mask  token")
                    for (i, id) in (e.prompt + ids).enumerated() {
                        print(String(format: "%6d %8d  %4d  ", i, id, i >= e.prompt.count ? 1 : 0) + tokenizer.decode([Int(id)]).debugDescription)
                    }
                }
            }
            print("")
        }
    }

    static func isPreference(_ spec: DatasetSpec) -> Bool {
        guard let s = try? DatasetBuilder.scan(spec, maxRows: 8) else { return false }
        return s.format == "dpo" || s.format == "kto"
    }
}
