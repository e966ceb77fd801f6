import Foundation
import LoftFormats
import LoftTemplates
import LoftTokenizers

/// What one preference dataset entry produced.
public struct PreferenceStats: Sendable, Codable, Equatable {
    public var path: String
    public var files: [String] = []
    public var layout = ""
    public var rows = 0
    public var examples = 0
    public var badRows = 0
    /// Rows dropped because the prompt alone fills sequence_len (TRL drops them too).
    public var dropped = 0
    /// Rows whose chosen or rejected completion was cut by sequence_len (they lose their end of turn).
    public var truncated = 0
    /// Rows whose prompt was cut to max_prompt_len (its start).
    public var promptTruncated = 0
    /// Longest sequence (prompt + longer completion) per row, before truncation.
    public var lengths = LengthSummary([])
    public var badRowErrors: [String] = []
    public var recommendedSequenceLen: Int { Swift.max(64, (Int((Double(lengths.p95) * 1.2).rounded(.up)) + 63) / 64 * 64) }
}

/// Preference examples ready to train, with where each came from.
public struct PreparedPreferenceDataset: Sendable {
    public var train: [PreferenceExample] = []
    public var validation: [PreferenceExample] = []
    public var trainOrigins: [ExampleOrigin] = []
    public var validationOrigins: [ExampleOrigin] = []
    public var stats: [PreferenceStats] = []
    public var warnings: [String] = []
    /// SHA-256 (hex) over every example's token ids and labels, train then validation.
    public var hash = ""
}

/// Reads preference datasets and tokenizes them as TRL 1.16's DPOTrainer and
/// KTOTrainer do: a conversation's prompt is rendered with the generation
/// prompt, prompt + completion without it, and the completion is what
/// follows the prompt's tokens; plain-text rows are tokenized with the
/// tokenizer's special tokens and EOS appended to each completion.
///
/// Where TRL only warns, Loft refuses: a prompt whose tokens are not a
/// prefix of prompt + completion is a bad row, named with the fix.
public final class PreferenceDatasetBuilder {
    public let tokenizer: Tokenizer
    public let options: DataOptions
    /// Longest prompt kept, in tokens (its start is cut); nil = only sequence_len applies.
    public var maxPromptLen: Int?
    let template: ChatTemplate?
    let templateError: DataError?

    public init(tokenizer: Tokenizer, template: ChatTemplate? = nil, options: DataOptions) throws {
        self.tokenizer = tokenizer
        self.options = options
        // The SFT builder resolves the template (a built-in name, Jinja source, or the tokenizer's) and its errors.
        let sft = try DatasetBuilder(tokenizer: tokenizer, template: template, options: options)
        self.template = sft.chatTemplate
        self.templateError = sft.chatTemplateError
    }

    public func build(_ specs: [DatasetSpec]) throws -> PreparedPreferenceDataset {
        guard !specs.isEmpty else { throw DataError("no datasets given", fix: "add at least one entry to `datasets:`") }
        var out = PreparedPreferenceDataset()
        var examples: [PreferenceExample] = [], origins: [ExampleOrigin] = []
        for spec in specs {
            let (ex, or, stats) = try buildOne(spec)
            examples += ex
            origins += or
            out.stats.append(stats)
            if stats.badRows > 0 { out.warnings.append("\(spec.path): skipped \(stats.badRows) bad rows; first: \(stats.badRowErrors.first ?? "")") }
            if stats.dropped > 0 { out.warnings.append("\(spec.path): dropped \(stats.dropped) rows whose prompt alone fills sequence_len \(options.sequenceLen)") }
            if stats.truncated > 0 {
                out.warnings.append("\(spec.path): sequence_len \(options.sequenceLen) cuts the completion of \(stats.truncated) of \(stats.examples) rows (they lose their end of turn); about \(stats.recommendedSequenceLen) would keep 95% whole")
            }
            if options.refuseOnProblems, stats.examples == 0 {
                throw DataError(file: spec.path, "no usable preference rows (\(stats.rows) rows, \(stats.badRows) bad, \(stats.dropped) too long)",
                                fix: stats.badRows > 0 ? "fix the rows: \(stats.badRowErrors.first ?? "")" : "check the file and sequence_len")
            }
        }
        let n = examples.count
        let v = options.valSetSize
        let valCount = v < 1 ? Int((Double(n) * v).rounded()) : Int(v)
        if valCount >= n && valCount > 0 {
            throw DataError(field: "val_set_size", "\(valCount) validation rows leave none of the \(n) for training", fix: "use a smaller val_set_size (e.g. 0.05)")
        }
        var isVal = [Bool](repeating: false, count: n)
        if valCount > 0 {
            var rng = SplitMix64(seed: options.seed)
            var order = Array(0 ..< n)
            order.shuffle(using: &rng)
            for i in order.prefix(valCount) { isVal[i] = true }
        }
        for i in 0 ..< n {
            if isVal[i] { out.validation.append(examples[i]); out.validationOrigins.append(origins[i]) }
            else { out.train.append(examples[i]); out.trainOrigins.append(origins[i]) }
        }
        out.hash = Self.contentHash(train: out.train, validation: out.validation)
        return out
    }

    /// One dataset entry's examples in row order.
    public func buildOne(_ spec: DatasetSpec) throws -> ([PreferenceExample], [ExampleOrigin], PreferenceStats) {
        var stats = PreferenceStats(path: spec.path)
        stats.files = try expandDatasetPath(spec.path)
        var examples: [PreferenceExample] = [], origins: [ExampleOrigin] = []
        var lengths: [Int] = []
        var layouts = Set<String>()
        let fields = Fields(map: spec.fieldMap)
        fileLoop: for file in stats.files {
            let reader = try RowReader(path: file)
            reader.rows = try spec.rowSlice()
            var pending: [Result<RawRow, DataError>] = []
            while pending.count < 8, let r = try reader.next() { pending.append(r) }
            var layout = spec.type.flatMap(PreferenceLayout.init(axolotlType:))
            if layout == nil {
                let objects = pending.compactMap { (try? $0.get()).flatMap { r -> JinjaObject? in if case .object(let o) = r.value { return o } else { return nil } } }
                layout = objects.lazy.compactMap { PreferenceLayout.detect($0, fields: fields) }.first
            }
            guard let layout else {
                throw DataError(file: file, row: (try? pending.first?.get())?.row, "no preference layout fits the rows' keys",
                                fix: "use `prompt` + `chosen` + `rejected` (strings or message lists), `chosen` + `rejected` conversations, LLaMA-Factory's `conversations` + `chosen` + `rejected`, `chosen_messages` + `rejected_messages`, or KTO rows with a boolean `label`")
            }
            layouts.insert(layout.rawValue)
            let converter = PreferenceRowConverter(layout: layout, spec: spec, templateHandlesToolCalls: template?.source.contains("tool_calls") ?? false)
            var index = 0
            while true {
                let next: Result<RawRow, DataError>
                if index < pending.count { next = pending[index]; index += 1 } else if let r = try reader.next() { next = r } else { break }
                if let m = options.maxRows, stats.rows >= m { break fileLoop }
                stats.rows += 1
                do {
                    let raw = try next.get()
                    let row = try converter.convert(raw)
                    var ex = try tokenize(row, raw: raw)
                    lengths.append(ex.longestSequence)
                    if let budget = maxPromptLen, ex.prompt.count > budget {
                        ex.prompt = Array(ex.prompt.suffix(budget))
                        stats.promptTruncated += 1
                    }
                    // TRL drops a row whose prompt fills max_length (keep_start would leave no completion token).
                    if ex.prompt.count >= options.sequenceLen { stats.dropped += 1; continue }
                    let room = options.sequenceLen - ex.prompt.count
                    if ex.chosen.count > room || ex.rejected.count > room {
                        stats.truncated += 1
                        ex.chosen = Array(ex.chosen.prefix(room))
                        ex.rejected = Array(ex.rejected.prefix(room))
                    }
                    examples.append(ex)
                    origins.append(ExampleOrigin(file: raw.file, row: raw.row))
                } catch let e as DataError {
                    if !options.skipBadRows { throw e }
                    stats.badRows += 1
                    if stats.badRowErrors.count < 5 { stats.badRowErrors.append(e.description) }
                }
            }
        }
        stats.examples = examples.count
        stats.lengths = LengthSummary(lengths)
        stats.layout = layouts.sorted().joined(separator: ", ")
        return (examples, origins, stats)
    }

    /// TRL's tokenization of one row (before truncation).
    func tokenize(_ row: PreferenceRow, raw: RawRow) throws -> PreferenceExample {
        let completions = [row.chosen] + (row.rejected.map { [$0] } ?? [])
        let promptIDs: [Int]
        var full: [[Int]] = []
        switch row.prompt {
        case .messages(let prompt):
            guard let template else {
                var e = templateError ?? DataError("no chat template")
                e.file = raw.file; e.row = raw.row
                throw e
            }
            func render(_ messages: [JinjaValue], generation: Bool) throws -> [Int] {
                do {
                    let text = try template.render(messages: messages, tools: row.tools, addGenerationPrompt: generation)
                    return tokenizer.encode(text, addSpecialTokens: false)
                } catch {
                    throw DataError(file: raw.file, row: raw.row, "the chat template failed on this row: \(error)",
                                    fix: "check the roles and their order (many templates need user/assistant to alternate), or remove the row")
                }
            }
            promptIDs = try render(prompt, generation: true)
            for c in completions {
                guard case .messages(let m) = c else { throw DataError(file: raw.file, row: raw.row, "text completion after a conversational prompt", fix: "make them the same kind") }
                full.append(try render(prompt + m, generation: false))
            }
        case .text(let prompt):
            promptIDs = tokenizer.encode(prompt, addSpecialTokens: true)
            for c in completions {
                guard case .text(var t) = c else { throw DataError(file: raw.file, row: raw.row, "a conversational completion after a text prompt", fix: "make them the same kind") }
                if let eos = tokenizer.eosToken, !t.hasSuffix(eos) { t += eos }
                full.append(tokenizer.encode(prompt + t, addSpecialTokens: true))
            }
        }
        for (k, ids) in full.enumerated() {
            var n = 0
            while n < promptIDs.count && n < ids.count && promptIDs[n] == ids[n] { n += 1 }
            if n < promptIDs.count {
                let which = row.rejected == nil ? "completion" : (k == 0 ? "chosen" : "rejected")
                let tail = tokenizer.decode(Array(promptIDs[n...]))
                throw DataError(file: raw.file, row: raw.row,
                                "the prompt's tokens are not a prefix of prompt + \(which) (they diverge at token \(n) of \(promptIDs.count), prompt ends with \(String(reflecting: tail)))",
                                fix: "the chat template renders the prompt differently with add_generation_prompt, or a token merges across the boundary; end the prompt on a token boundary (e.g. a trailing newline or space moved into the completion), use a chat template that renders the prompt the same way, or set skip_bad_rows: true to drop such rows")
            }
            if ids.count == promptIDs.count {
                throw DataError(file: raw.file, row: raw.row, "the \(row.rejected == nil ? "completion" : (k == 0 ? "chosen" : "rejected")) completion adds no tokens",
                                fix: "give it a non-empty answer, or remove the row")
            }
        }
        func ids(_ x: [Int]) -> [Int32] { x.map(Int32.init) }
        return PreferenceExample(prompt: ids(promptIDs), chosen: ids(Array(full[0][promptIDs.count...])),
                                 rejected: full.count > 1 ? ids(Array(full[1][promptIDs.count...])) : [], label: row.label)
    }

    /// SHA-256 over each example's prompt, chosen, rejected (length-prefixed little-endian Int32) and label.
    public static func contentHash(train: [PreferenceExample], validation: [PreferenceExample]) -> String {
        var h = SHA256()
        for (tag, set) in [(UInt8(ascii: "T"), train), (UInt8(ascii: "V"), validation)] {
            h.update([tag])
            for e in set {
                var bytes: [UInt8] = []
                func put(_ v: Int32) { let u = UInt32(bitPattern: v); bytes += [UInt8(u & 0xff), UInt8((u >> 8) & 0xff), UInt8((u >> 16) & 0xff), UInt8(u >> 24)] }
                for part in [e.prompt, e.chosen, e.rejected] { put(Int32(part.count)); for v in part { put(v) } }
                put(e.label.map { $0 ? 1 : 0 } ?? -1)
                h.update(bytes)
            }
        }
        return h.finalize().map { String(format: "%02x", $0) }.joined()
    }
}
