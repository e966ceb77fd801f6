import Foundation
import LoftData
import LoftTemplates
import Yams

/// The subset of lm-evaluation-harness task YAML that users write for local
/// data: `dataset_path: json` with `data_files` (top level or under
/// `dataset_kwargs`), `test_split`/`validation_split`/`training_split`/
/// `fewshot_split`, `output_type` (multiple_choice, generate_until,
/// loglikelihood), `doc_to_text`, `doc_to_target`, `doc_to_choice` (a column,
/// a Jinja template over the row, or a list), `target_delimiter`,
/// `fewshot_delimiter`, `description`, `num_fewshot` with the `first_n`
/// sampler, `generation_kwargs` (`until`, `max_gen_toks`) and `metric_list`.
/// Contexts are built exactly as lm-eval 0.4 builds plain-text prompts.
public struct LMEvalTask {
    public var name: String
    public var path: String
    public var outputType: EvalItem.Kind
    public var items: [EvalItem]
    /// Metric names from metric_list that Loft computes.
    public var metrics: [String]
    public var maxGenerationTokens: Int?

    static let knownKeys: Set<String> = [
        "task", "tag", "group", "dataset_path", "dataset_name", "dataset_kwargs", "data_files", "test_split", "validation_split",
        "training_split", "fewshot_split", "output_type", "doc_to_text", "doc_to_target", "doc_to_choice", "target_delimiter",
        "fewshot_delimiter", "description", "num_fewshot", "fewshot_config", "generation_kwargs", "metric_list", "metadata",
        "should_decontaminate", "repeats", "filter_list",
    ]

    public static func load(_ path: String, numFewshot override: Int? = nil, limit: Int? = nil) throws -> LMEvalTask {
        func fail(_ field: String?, _ message: String) -> EvalError { .badData(file: path, row: nil, field: field, message: message) }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw fail(nil, "cannot be read; give an lm-eval task YAML")
        }
        let yaml: Any?
        do { yaml = try Yams.load(yaml: text) } catch { throw fail(nil, "is not valid YAML: \(error)") }
        guard let config = yaml as? [String: Any] else { throw fail(nil, "must be a mapping of task keys (task, dataset_path, doc_to_text, …)") }
        for key in config.keys where !knownKeys.contains(key) {
            throw fail(key, "is not a key Loft's lm-eval subset reads; remove it or see docs/eval.md for the supported keys")
        }
        let dataset = config["dataset_path"] as? String ?? ""
        guard dataset == "json" else {
            throw fail("dataset_path", "`\(dataset)`: Loft reads local data only; use `dataset_path: json` with `data_files`")
        }
        // data_files: a path or list (split "train", as datasets names it) or {split: path(s)}.
        let dataFiles = config["data_files"] ?? (config["dataset_kwargs"] as? [String: Any])?["data_files"]
        var splits: [String: [String]] = [:]
        switch dataFiles {
        case let s as String: splits["train"] = [s]
        case let l as [String]: splits["train"] = l
        case let d as [String: Any]:
            for (k, v) in d { splits[k] = (v as? String).map { [$0] } ?? (v as? [String]) ?? [] }
        default: throw fail("data_files", "is missing; give `data_files: {test: your.jsonl}` (paths relative to the YAML)")
        }
        let base = URL(fileURLWithPath: path).deletingLastPathComponent()
        func resolve(_ p: String) -> String {
            let expanded = (p as NSString).expandingTildeInPath
            if expanded.hasPrefix("/") { return expanded }
            let relative = base.appendingPathComponent(expanded).path
            return FileManager.default.fileExists(atPath: relative) ? relative : expanded
        }
        func docs(_ split: String, field: String) throws -> [JinjaObject] {
            guard let files = splits[split] else {
                throw fail(field, "names the split `\(split)` but data_files has \(splits.keys.sorted().joined(separator: ", ")) (a single path is the split `train`)")
            }
            var out: [JinjaObject] = []
            for f in files.map(resolve) {
                guard FileManager.default.fileExists(atPath: f) else { throw fail("data_files", "`\(f)` does not exist") }
                let reader = try RowReader(path: f)
                var row = 0
                while let r = try reader.next() {
                    switch r {
                    case .success(let raw):
                        guard case .object(let o) = raw.value else { throw EvalError.badData(file: f, row: row, field: nil, message: "is not a JSON object") }
                        out.append(o)
                    case .failure(let e): throw EvalError.badData(file: f, row: row, field: nil, message: "\(e)")
                    }
                    row += 1
                }
            }
            return out
        }
        let testSplit = (config["test_split"] as? String) ?? (config["validation_split"] as? String)
        guard let testSplit else { throw fail("test_split", "is missing; name the split to evaluate (e.g. `test_split: test`, or `train` for a single data file)") }
        let testField = config["test_split"] != nil ? "test_split" : "validation_split"
        var testDocs = try docs(testSplit, field: testField)
        if let limit { testDocs = Array(testDocs.prefix(limit)) }

        let outputType: EvalItem.Kind
        switch config["output_type"] as? String ?? "generate_until" {
        case "multiple_choice": outputType = .multipleChoice
        case "generate_until": outputType = .generation
        case "loglikelihood": outputType = .loglikelihood
        case let other: throw fail("output_type", "`\(other)` is not supported; use multiple_choice, generate_until or loglikelihood")
        }
        let targetDelimiter = config["target_delimiter"] as? String ?? " "
        let fewshotDelimiter = config["fewshot_delimiter"] as? String ?? "\n\n"
        let description = config["description"] as? String ?? ""
        let numFewshot = override ?? (config["num_fewshot"] as? Int) ?? 0
        let sampler = (config["fewshot_config"] as? [String: Any])?["sampler"] as? String ?? "default"
        if numFewshot > 0 && sampler != "first_n" {
            throw fail("fewshot_config", "num_fewshot \(numFewshot) needs a fixed sampler: add `fewshot_config: {sampler: first_n}` (lm-eval's random `default` sampler is not reproduced)")
        }
        let fewshotSplit = (config["fewshot_split"] as? String) ?? (config["training_split"] as? String)
            ?? (config["validation_split"] as? String) ?? testSplit
        let fewshotDocs = numFewshot > 0 ? try docs(fewshotSplit, field: "fewshot_split") : []

        let textSpec = config["doc_to_text"], targetSpec = config["doc_to_target"], choiceSpec = config["doc_to_choice"]
        if outputType == .multipleChoice && choiceSpec == nil { throw fail("doc_to_choice", "is required for output_type multiple_choice") }
        let fields = Set(testDocs.first?.keys ?? [])
        var templates: [String: TextTemplate] = [:]
        func render(_ spec: String, _ doc: JinjaObject, field: String) throws -> String {
            if templates[spec] == nil {
                do { templates[spec] = try TextTemplate(spec) } catch { throw fail(field, "is not a valid Jinja template: \(error)") }
            }
            var vars: [String: JinjaValue] = [:]
            for (k, v) in doc.pairs { vars[k] = v }
            do { return try templates[spec]!.render(vars) } catch { throw fail(field, "failed to render: \(error)") }
        }
        func value(_ spec: Any?, _ doc: JinjaObject, field: String) throws -> JinjaValue {
            switch spec {
            case let i as Int: return .int(i)
            case let s as String:
                if fields.contains(s), let v = doc[s] { return v }
                return .string(try render(s, doc, field: field))
            case let l as [Any]: return .array(l.map { .string("\($0)") })
            case nil: throw fail(field, "is missing")
            default: throw fail(field, "expected a column name, a Jinja template or a list")
            }
        }
        func choices(_ doc: JinjaObject) throws -> [String] {
            guard let choiceSpec else { return [] }
            if let s = choiceSpec as? String {
                if fields.contains(s), let list = doc[s]?.arrayValue { return list.map { $0.stringValue ?? $0.jsonText() } }
                // "{{ column }}" over a list column: the list itself (what literal_eval of its repr gives).
                if let m = s.range(of: #"^\s*\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}\s*$"#, options: .regularExpression) {
                    let name = s[m].trimmingCharacters(in: CharacterSet(charactersIn: "{} \n\t"))
                    if let list = doc[name]?.arrayValue { return list.map { $0.stringValue ?? $0.jsonText() } }
                }
                let rendered = try render(s, doc, field: "doc_to_choice")
                guard let parsed = PythonLiteral.stringList(rendered) else {
                    throw fail("doc_to_choice", "rendered to `\(rendered.prefix(80))`, not a list literal of strings")
                }
                return parsed
            }
            if let l = choiceSpec as? [Any] { return l.map { "\($0)" } }
            if let d = choiceSpec as? [String: Any] { return d.keys.sorted().map { "\(d[$0]!)" } }
            throw fail("doc_to_choice", "expected a column name, a Jinja template or a list")
        }
        func docText(_ doc: JinjaObject) throws -> String {
            let v = try value(textSpec, doc, field: "doc_to_text")
            guard let s = v.stringValue else { throw fail("doc_to_text", "must give text (multiple-input tasks are not supported)") }
            return s
        }
        /// doc_to_target as lm-eval reads it: an index for multiple choice when it is all digits.
        func target(_ doc: JinjaObject) throws -> JinjaValue {
            let v = try value(targetSpec, doc, field: "doc_to_target")
            if case .string(let s) = v, choiceSpec != nil, !s.isEmpty, s.unicodeScalars.allSatisfy({ ("0"..."9").contains($0) }), let i = Int(s) { return .int(i) }
            if case .string(let s) = v, s.hasPrefix("["), s.hasSuffix("]"), let list = PythonLiteral.stringList(s) { return .array(list.map { .string($0) }) }
            return v
        }
        func targetText(_ doc: JinjaObject) throws -> String {
            let t = try target(doc)
            switch t {
            case .int(let i):
                let c = try choices(doc)
                guard c.indices.contains(i) else { throw fail("doc_to_target", "index \(i) is outside the \(c.count) choices") }
                return c[i]
            case .array(let l): return l.first?.stringValue ?? ""
            default: return t.stringValue ?? t.jsonText()
            }
        }

        var items: [EvalItem] = []
        for (i, doc) in testDocs.enumerated() {
            // Few-shot examples: the first n of the few-shot split, without this doc.
            var context = description
            if numFewshot > 0 {
                // lm-eval leaves the evaluated doc out of its own shots only
                // when `fewshot_split` names the test split; when the split is
                // implied (no training or validation split), a doc can be its own shot.
                let pool = (config["fewshot_split"] as? String) == testSplit ? fewshotDocs.filter { $0 != doc } : fewshotDocs
                guard pool.count >= numFewshot else {
                    throw fail("num_fewshot", "asks for \(numFewshot) examples but the split `\(fewshotSplit)` has \(pool.count)")
                }
                for ex in pool.prefix(numFewshot) {
                    context += try docText(ex) + targetDelimiter + targetText(ex) + fewshotDelimiter
                }
            }
            context += try docText(doc)
            var item = EvalItem(id: i, kind: outputType, prompt: .text(context))
            item.targetDelimiter = targetDelimiter
            item.doc = .object(doc)
            switch outputType {
            case .multipleChoice:
                item.choices = try choices(doc)
                let t = try target(doc)
                switch t {
                case .int(let g): item.gold = g
                case .string(let s): item.gold = item.choices.firstIndex(of: s)
                default: item.gold = nil
                }
                guard let g = item.gold, item.choices.indices.contains(g) else {
                    throw EvalError.badData(file: path, row: i, field: "doc_to_target", message: "does not give a valid choice index or choice text")
                }
                item.references = [item.choices[g]]
            case .generation, .loglikelihood:
                let t = try target(doc)
                item.references = try t.arrayValue?.compactMap(\.stringValue) ?? [targetText(doc)]
            case .preference: break
            }
            items.append(item)
        }
        let generationKwargs = config["generation_kwargs"] as? [String: Any]
        var until: [String] = [fewshotDelimiter]
        if let u = generationKwargs?["until"] { until = (u as? [String]) ?? ((u as? String).map { [$0] } ?? until) }
        if outputType == .generation { for i in items.indices { items[i].until = until } }

        let known = Set(Metric.all.keys)
        let listed = (config["metric_list"] as? [[String: Any]] ?? []).compactMap { $0["metric"] as? String }
        let metrics = listed.compactMap { name -> String? in
            let mapped = ["rougeL": "rougeL", "rouge": "rougeL", "sacrebleu": "bleu", "ter": nil][name] ?? name
            return mapped.flatMap { known.contains($0) ? $0 : nil }
        }
        return LMEvalTask(name: config["task"] as? String ?? URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent,
                          path: path, outputType: outputType, items: items, metrics: metrics,
                          maxGenerationTokens: generationKwargs?["max_gen_toks"] as? Int)
    }
}

/// `ast.literal_eval` of a list of string (or number) literals.
enum PythonLiteral {
    static func stringList(_ text: String) -> [String]? {
        let s = Array(text.trimmingCharacters(in: .whitespacesAndNewlines).unicodeScalars)
        guard s.first == "[", s.last == "]" else { return nil }
        var out: [String] = []
        var i = 1
        func skipSpace() { while i < s.count - 1 && PythonText.isSpace(s[i]) { i += 1 } }
        while true {
            skipSpace()
            if i >= s.count - 1 { break }
            if s[i] == "'" || s[i] == "\"" {
                let quote = s[i]; i += 1
                var value: [Unicode.Scalar] = []
                while i < s.count - 1 && s[i] != quote {
                    if s[i] == "\\" && i + 1 < s.count - 1 {
                        i += 1
                        switch s[i] { case "n": value.append("\n"); case "t": value.append("\t"); default: value.append(s[i]) }
                    } else { value.append(s[i]) }
                    i += 1
                }
                guard i < s.count - 1 else { return nil }
                i += 1
                out.append(value.string)
            } else {
                var value: [Unicode.Scalar] = []
                while i < s.count - 1 && s[i] != "," && !PythonText.isSpace(s[i]) { value.append(s[i]); i += 1 }
                guard Double(value.string) != nil else { return nil }
                out.append(value.string)
            }
            skipSpace()
            if i < s.count - 1 { guard s[i] == "," else { return nil }; i += 1 }
        }
        return out
    }
}
