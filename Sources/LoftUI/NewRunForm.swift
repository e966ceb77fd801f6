import Foundation
import LoftRuns
import LoftTraining
import Yams

/// The new-run form: the options people change most, over a YAML editor that
/// holds the whole config. Fields win over the editor's keys; the result is
/// checked by `TrainConfig.load`, the same checks `loft train` runs, and
/// every problem is shown beside the field it names.
struct NewRunForm {
    struct Field {
        var key: String
        var label: String
        var kind: Kind
        var help: String
        enum Kind { case text, number, select([String]), check }
    }

    static let fields: [Field] = [
        Field(key: "name", label: "Run name", kind: .text, help: "shown in the runs list; empty: from output_dir"),
        Field(key: "base_model", label: "Base model", kind: .text, help: "a .gguf file, a Hugging Face directory, or a Hub id"),
        Field(key: "dataset_path", label: "Dataset", kind: .text, help: "JSONL, JSON, Parquet file or directory"),
        Field(key: "dataset_type", label: "Dataset type", kind: .select(["", "alpaca", "chat_template", "sharegpt", "completion", "input_output", "messages"]),
              help: "empty: detected from the rows"),
        Field(key: "adapter", label: "Adapter", kind: .select(["lora", "qlora"]), help: "qlora keeps the base in NF4 (load_in_4bit)"),
        Field(key: "lora_r", label: "Rank (r)", kind: .number, help: ""),
        Field(key: "lora_alpha", label: "Alpha", kind: .number, help: ""),
        Field(key: "lora_target_modules", label: "Target modules", kind: .text, help: "all-linear, or q_proj,v_proj,…"),
        Field(key: "sequence_len", label: "Sequence length", kind: .number, help: "tokens; longer rows are truncated"),
        Field(key: "micro_batch_size", label: "Micro-batch", kind: .number, help: ""),
        Field(key: "gradient_accumulation_steps", label: "Accumulation", kind: .number, help: "micro-batches per optimizer step"),
        Field(key: "num_epochs", label: "Epochs", kind: .number, help: ""),
        Field(key: "max_steps", label: "Max steps", kind: .number, help: "overrides epochs when set"),
        Field(key: "learning_rate", label: "Learning rate", kind: .text, help: "e.g. 2e-4"),
        Field(key: "lr_scheduler", label: "Schedule", kind: .select(["", "cosine", "linear", "constant"]), help: ""),
        Field(key: "gradient_checkpointing", label: "Gradient checkpointing", kind: .check, help: "less memory, ~30% slower"),
        Field(key: "save_steps", label: "Checkpoint every", kind: .number, help: "steps"),
        Field(key: "output_dir", label: "Output directory", kind: .text, help: "empty: inside $LOFT_HOME/runs/ID"),
    ]

    /// A template's YAML with its relative paths made absolute (they were relative to the template's file).
    static func templateYAML(_ path: String) -> String? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8),
              var dict = (try? Yams.load(yaml: text)) as? [String: Any] else { return nil }
        let dir = URL(fileURLWithPath: path).deletingLastPathComponent()
        func absolute(_ p: String) -> String {
            if p.hasPrefix("/") || p.hasPrefix("~") { return p }
            let c = dir.appendingPathComponent(p).standardizedFileURL.path
            return FileManager.default.fileExists(atPath: c) ? c : p
        }
        if let b = dict["base_model"] as? String { dict["base_model"] = absolute(b) }
        if var ds = dict["datasets"] as? [[String: Any]] {
            for i in ds.indices { if let p = ds[i]["path"] as? String { ds[i]["path"] = absolute(p) } }
            dict["datasets"] = ds
        }
        dict.removeValue(forKey: "output_dir")
        return (try? Yams.dump(object: dict, sortKeys: true)).map { "# from \(path)\n" + $0 }
    }

    struct Outcome {
        var yaml: String
        var problems: [String: [String]] = [:]
        var config: TrainConfig?
        var plan: String?
        var fits: Bool?
        var ok: Bool { problems.isEmpty && config != nil }
    }

    let form: FormData
    let baseDirectory: String
    let runDirectory: String
    let allowed: AllowedPaths

    /// The editor's YAML with the fields applied, then checked.
    func compose() -> Outcome {
        var problems: [String: [String]] = [:]
        func add(_ key: String, _ message: String) { problems[key, default: []].append(message) }
        let editor = form["yaml"] ?? ""
        var dict: [String: Any] = [:]
        do {
            let parsed = try Yams.load(yaml: editor)
            if let d = parsed as? [String: Any] { dict = d } else if parsed != nil { add("yaml", "the YAML must be a mapping of keys to values") }
        } catch { add("yaml", "not valid YAML: \(error)") }
        // Fields, typed as `loft train --set` types them.
        for f in Self.fields {
            if case .check = f.kind {
                if form["has_" + f.key] != nil { dict[f.key] = form[f.key] != nil }
                continue
            }
            guard f.key != "name", let v = form.text(f.key) else { continue }
            let typed: Any = (try? Yams.load(yaml: v)).flatMap { $0 } ?? v
            switch f.key {
            case "dataset_path", "dataset_type":
                var ds = (dict["datasets"] as? [[String: Any]]) ?? []
                if ds.isEmpty { ds = [[:]] }
                ds[0][f.key == "dataset_path" ? "path" : "type"] = v
                dict["datasets"] = ds
            case "adapter":
                dict["adapter"] = v
                if v == "qlora" { dict["load_in_4bit"] = true } else { dict.removeValue(forKey: "load_in_4bit") }
            case "base_model", "output_dir", "lora_target_modules", "lr_scheduler":
                dict[f.key] = v
            default:
                dict[f.key] = typed
            }
        }
        if dict["output_dir"] == nil { dict["output_dir"] = runDirectory + "/output" }
        // Relative paths are relative to where the UI was started.
        func absolute(_ p: String) -> String {
            if p.hasPrefix("/") { return p }
            if p.hasPrefix("~") { return (p as NSString).expandingTildeInPath }
            let c = URL(fileURLWithPath: baseDirectory).appendingPathComponent(p).standardizedFileURL.path
            return FileManager.default.fileExists(atPath: c) || p.hasPrefix(".") ? c : p
        }
        if let b = dict["base_model"] as? String { dict["base_model"] = absolute(b) }
        if let o = dict["output_dir"] as? String { dict["output_dir"] = absolute(o) }
        if var ds = dict["datasets"] as? [[String: Any]] {
            for i in ds.indices { if let p = ds[i]["path"] as? String { ds[i]["path"] = absolute(p) } }
            dict["datasets"] = ds
        }
        // Paths must lie in the directories the UI may use.
        if let b = dict["base_model"] as? String, AllowedPaths.looksLikePath(b), let why = allowed.refusal(b) { add("base_model", why) }
        if let o = dict["output_dir"] as? String {
            if let why = allowed.refusal(o) { add("output_dir", why) }
            let existing = (try? FileManager.default.contentsOfDirectory(atPath: o))?.filter { !$0.hasPrefix(".") } ?? []
            if !existing.isEmpty { add("output_dir", "\(o) already holds \(existing.count) file(s); choose another directory (a run never overwrites one)") }
        }
        for d in (dict["datasets"] as? [[String: Any]]) ?? [] {
            guard let p = d["path"] as? String else { continue }
            if AllowedPaths.looksLikePath(p) {
                if let why = allowed.refusal(p) { add("dataset_path", why) }
                else if !FileManager.default.fileExists(atPath: p) { add("dataset_path", "\(p) does not exist") }
            }
        }
        let yaml = (try? Yams.dump(object: dict, sortKeys: true)) ?? editor
        var outcome = Outcome(yaml: yaml, problems: problems)
        // The checks of `loft train`.
        let temp = NSTemporaryDirectory() + "loft-ui-\(UUID().uuidString).yaml"
        defer { try? FileManager.default.removeItem(atPath: temp) }
        do {
            try yaml.write(toFile: temp, atomically: true, encoding: .utf8)
            outcome.config = try TrainConfig.load(path: temp)
        } catch let e as ConfigError {
            for p in e.problems { add(Self.field(for: p), p) }
        } catch { add("yaml", "\(error)") }
        outcome.problems = problems
        if let cfg = outcome.config, problems.isEmpty {
            do {
                let plan = try MemoryPlanner(config: cfg).plan()
                let available = ProcessMemory.availableBytes()
                outcome.fits = available.map { plan.peakBytes <= $0 }
                outcome.plan = "predicted peak \(MemoryPlan.format(plan.peakBytes))"
                    + (available.map { " of \(MemoryPlan.format($0)) available" } ?? "")
                    + " · " + plan.parts.prefix(6).map { "\($0.name) \(MemoryPlan.format($0.bytes))" }.joined(separator: ", ")
            } catch {
                outcome.plan = "no memory plan: \(error)"
            }
        }
        return outcome
    }

    /// The form field a `loft train` problem belongs to ("key: message").
    static func field(for problem: String) -> String {
        let key = String(problem.prefix { $0 != ":" && $0 != " " && $0 != "[" })
        if key == "datasets" { return problem.contains("type") ? "dataset_type" : "dataset_path" }
        if key == "load_in_4bit" { return "adapter" }
        return fields.contains { $0.key == key } ? key : "yaml"
    }

    /// The form, filled with what was submitted and its problems beside each field.
    static func render(_ pages: Pages, form: FormData, id: String, yaml: String, outcome: Outcome?) -> String {
        func problems(_ key: String) -> String {
            (outcome?.problems[key] ?? []).map { "<div class=\"field-error\" data-field-error=\"\(h(key))\">\(h($0))</div>" }.joined()
        }
        var inputs = ""
        for f in fields {
            let v = form[f.key] ?? ""
            let control: String
            switch f.kind {
            case .text:
                control = "<input type=\"text\" name=\"\(f.key)\" id=\"f-\(f.key)\" value=\"\(h(v))\">"
            case .number:
                control = "<input type=\"text\" inputmode=\"decimal\" name=\"\(f.key)\" id=\"f-\(f.key)\" value=\"\(h(v))\">"
            case .select(let options):
                control = "<select name=\"\(f.key)\" id=\"f-\(f.key)\">" + options.map {
                    "<option value=\"\(h($0))\"\($0 == v ? " selected" : "")>\($0.isEmpty ? "(from the YAML)" : h($0))</option>"
                }.joined() + "</select>"
            case .check:
                let on = form["has_" + f.key] != nil ? form[f.key] != nil : false
                control = "<input type=\"hidden\" name=\"has_\(f.key)\" value=\"1\"><input type=\"checkbox\" name=\"\(f.key)\" id=\"f-\(f.key)\" value=\"true\"\(on ? " checked" : "")>"
            }
            let bad = !(outcome?.problems[f.key] ?? []).isEmpty
            inputs += "<div class=\"field\(bad ? " invalid" : "")\"><label for=\"f-\(f.key)\">\(h(f.label))</label>\(control)"
                + (f.help.isEmpty ? "" : "<div class=\"help\">\(h(f.help))</div>") + problems(f.key) + "</div>"
        }
        var summary = ""
        if let o = outcome {
            if o.ok {
                summary = "<div class=\"ok-box\" id=\"check-result\">The config passes <code>loft train</code>'s checks."
                    + (o.plan.map { " Memory: \(h($0)). <b>" + (o.fits == false ? "Does not fit" : o.fits == true ? "Fits" : "") + "</b>" } ?? "")
                    + "</div>"
            } else {
                let n = o.problems.values.reduce(0) { $0 + $1.count }
                summary = "<div class=\"error-box\" id=\"check-result\">\(n) problem\(n == 1 ? "" : "s"): each is shown beside its field.</div>"
            }
        }
        let body = """
            <h1>New run</h1>
            <p class="muted">The fields override the YAML's keys. <b>Check</b> runs <code>loft train</code>'s checks and <code>loft plan</code>'s memory estimate; <b>Start</b> queues the run (runs start one after another).</p>
            \(summary)
            <form method="post" action="/new" id="new-run" class="new-run">\(pages.csrfField)
            <input type="hidden" name="id" value="\(h(id))">
            <div class="fields">\(inputs)</div>
            <div class="field yaml\((outcome?.problems["yaml"] ?? []).isEmpty ? "" : " invalid")"><label for="f-yaml">Full config (YAML)</label>
            <textarea name="yaml" id="f-yaml" rows="22" spellcheck="false">\(h(yaml))</textarea>\(problems("yaml"))</div>
            <div class="actions"><button class="button" name="action" value="check" id="check">Check and plan</button>
            <button class="button primary" name="action" value="start" id="start">Start</button></div>
            </form>
            """
        return pages.layout("New run", active: "/new", body)
    }
}

/// The directories forms may name: where the UI was started, $LOFT_HOME,
/// the model caches, and any `--allow-dir`.
public struct AllowedPaths: Sendable {
    public var roots: [String]

    public init(roots: [String]) {
        self.roots = roots.map { Self.canonical($0) }
    }

    static func canonical(_ p: String) -> String {
        let expanded = (p as NSString).expandingTildeInPath
        // Symlinks resolved where the path exists (or as far as it does).
        var url = URL(fileURLWithPath: expanded).standardizedFileURL
        var tail: [String] = []
        while !FileManager.default.fileExists(atPath: url.path) && url.path != "/" {
            tail.insert(url.lastPathComponent, at: 0)
            url.deleteLastPathComponent()
        }
        var resolved = url.resolvingSymlinksInPath().path
        for t in tail { resolved += (resolved.hasSuffix("/") ? "" : "/") + t }
        return resolved
    }

    /// Why `path` may not be used, or nil when it may.
    public func refusal(_ path: String) -> String? {
        let c = Self.canonical(path)
        if roots.contains(where: { c == $0 || c.hasPrefix($0.hasSuffix("/") ? $0 : $0 + "/") }) { return nil }
        return "\(path) is outside the directories the UI may use (\(roots.joined(separator: ", "))); start `loft ui --allow-dir DIR` to add one"
    }

    /// A Hub id (org/name) is not a path; anything that starts like one, or exists, is.
    public static func looksLikePath(_ s: String) -> Bool {
        s.hasPrefix("/") || s.hasPrefix(".") || s.hasPrefix("~") || FileManager.default.fileExists(atPath: s)
            || s.split(separator: "/").count != 2
    }
}
