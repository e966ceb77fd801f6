import Foundation
import LoftFormats
import LoftTemplates
import LoftTokenizers

/// Which end-of-turn tokens are trained (Axolotl's `train_on_eos`).
public enum TrainOnEOS: String, Sendable, Codable, CaseIterable {
    /// after every trained turn
    case turn
    /// after the last trained turn only
    case last
    /// every end-of-turn token in the sequence
    case all
    /// none
    case none
}

/// What to do with a row longer than `sequenceLen`.
public enum TruncationPolicy: String, Sendable, Codable {
    /// Cut it: chat rows after the last whole trained turn that fits, text at `sequenceLen`.
    case truncate
    /// Drop the row.
    case drop
}

/// How rows become training examples.
public struct DataOptions: Sendable, Equatable {
    public var sequenceLen: Int = 2048
    public var truncation: TruncationPolicy = .truncate
    /// Train every message (and prompt text), not only the roles in `rolesToTrain`.
    public var trainOnInputs = false
    public var rolesToTrain: [String] = ["assistant"]
    public var trainOnEOS: TrainOnEOS = .turn
    /// Train only the last trainable turn of each conversation.
    public var lastTurnOnly = false
    /// A built-in template name (chatml, alpaca, llama2, gemma) or Jinja source; overrides the tokenizer's.
    public var chatTemplate: String?
    /// Count and skip malformed rows instead of stopping at the first.
    public var skipBadRows = false
    /// Validation split: a fraction below 1, or a row count.
    public var valSetSize: Double = 0
    public var seed: UInt64 = 42
    /// Refuse when more than this share of a dataset's rows has no trained token.
    public var maxMaskedRowShare: Double = 0.5
    /// Refuse when more than this share of a dataset's rows is cut or dropped by `sequenceLen`.
    public var maxTruncatedShare: Double = 0.5
    /// Throw on the problems above (`loft data check` turns this off to report them).
    public var refuseOnProblems = true
    /// Read at most this many rows per dataset (previews).
    public var maxRows: Int?

    public init(sequenceLen: Int = 2048) { self.sequenceLen = sequenceLen }
}

/// Token-length percentiles (nearest rank).
public struct LengthSummary: Sendable, Codable, Equatable {
    public var count = 0, p50 = 0, p95 = 0, p99 = 0, max = 0
    public var mean = 0.0

    public init(_ lengths: [Int]) {
        guard !lengths.isEmpty else { return }
        let s = lengths.sorted()
        func rank(_ q: Double) -> Int { s[Swift.max(0, Swift.min(s.count - 1, Int((q * Double(s.count)).rounded(.up)) - 1))] }
        count = s.count
        p50 = rank(0.5); p95 = rank(0.95); p99 = rank(0.99); max = s[s.count - 1]
        mean = Double(s.reduce(0, +)) / Double(s.count)
    }
}

/// What one dataset entry produced.
public struct DatasetStats: Sendable, Codable, Equatable {
    public var path: String
    public var files: [String] = []
    public var format: String = ""
    /// Rows read (good and bad).
    public var rows = 0
    public var examples = 0
    public var badRows = 0
    /// Rows longer than sequence_len that were dropped.
    public var dropped = 0
    /// Rows longer than sequence_len that were cut.
    public var truncated = 0
    /// Examples with no trained token.
    public var fullyMasked = 0
    public var totalTokens = 0
    public var trainedTokens = 0
    /// Token lengths before truncation.
    public var lengths = LengthSummary([])
    public var unfilledPlaceholders: [String] = []
    /// Up to five of the bad rows' errors.
    public var badRowErrors: [String] = []
    /// The bad rows by reason, in the order the reasons first occur.
    public var badRowReasons: [BadRowTally] = []

    public var truncatedShare: Double { rows - badRows > 0 ? Double(truncated + dropped) / Double(rows - badRows) : 0 }
    public var trainedTokenShare: Double { totalTokens > 0 ? Double(trainedTokens) / Double(totalTokens) : 0 }
    /// p95 × 1.2, rounded up to a multiple of 64.
    public var recommendedSequenceLen: Int { Swift.max(64, (Int((Double(lengths.p95) * 1.2).rounded(.up)) + 63) / 64 * 64) }
}

/// The processed data the trainer consumes.
public struct PreparedDataset: Sendable {
    public var train: [TokenizedExample] = []
    public var validation: [TokenizedExample] = []
    public var trainOrigins: [ExampleOrigin] = []
    public var validationOrigins: [ExampleOrigin] = []
    public var stats: [DatasetStats] = []
    public var warnings: [String] = []
    /// Reasons to refuse training (thrown unless `refuseOnProblems` is off).
    public var problems: [DataError] = []
    /// SHA-256 (hex) of every example's ids and labels, train then validation.
    public var hash = ""
}

/// Reads datasets, renders them with the chat template and tokenizes them with labels.
///
/// Not thread-safe (the tokenizer is not).
public final class DatasetBuilder {
    public let tokenizer: Tokenizer
    public let options: DataOptions
    private var template: ChatTemplate?
    /// The chat template's source (part of the token cache's key).
    public var templateSource: String? { template?.source }
    /// Called every 4096 rows of the entry being built: (file, bytes of the entry's files read, rows).
    public var rowProgress: ((String, Int64, Int) -> Void)?
    private let templateError: DataError?
    private let addsBOS: Bool
    /// The resolved chat template and, without one, why (preference data reuses them).
    var chatTemplate: ChatTemplate? { template }
    var chatTemplateError: DataError? { templateError }

    /// - template: the chat template; nil = `options.chatTemplate` (a built-in name or Jinja source),
    ///   else the tokenizer's.
    public init(tokenizer: Tokenizer, template: ChatTemplate? = nil, options: DataOptions = DataOptions()) throws {
        self.tokenizer = tokenizer
        self.options = options
        guard options.sequenceLen > 0 else {
            throw DataError("sequence_len must be positive, got \(options.sequenceLen)", fix: "set sequence_len to e.g. 2048")
        }
        var err: DataError? = nil
        if let template {
            self.template = template
        } else if let name = options.chatTemplate {
            let source = BuiltinTemplate.source(of: name)
            if BuiltinTemplate(rawValue: name.lowercased()) == nil && !name.contains("{") {
                throw DataError(field: "chat_template", "unknown template `\(name)`",
                                fix: "use one of \(BuiltinTemplate.allCases.map(\.rawValue).joined(separator: ", ")), or give Jinja source")
            }
            do { self.template = try ChatTemplate(source, bosToken: tokenizer.bosToken, eosToken: tokenizer.eosToken) }
            catch { throw DataError(field: "chat_template", "the template does not parse: \(error)", fix: "fix the template") }
        } else if let source = tokenizer.chatTemplate {
            do { self.template = try ChatTemplate(source, bosToken: tokenizer.bosToken, eosToken: tokenizer.eosToken) }
            catch { err = DataError(file: tokenizer.source, "the tokenizer's chat template does not parse: \(error)", fix: "set `chat_template: chatml` (or alpaca, llama2, gemma) to use a built-in one") }
        } else {
            err = DataError(file: tokenizer.source, "the model has no chat template, and chat data needs one",
                            fix: "set `chat_template: chatml` (or alpaca, llama2, gemma) in the config, or use an instruct model's tokenizer")
        }
        templateError = err
        let special = tokenizer.encode("", addSpecialTokens: true)
        addsBOS = tokenizer.bosTokenID != nil && special.first == tokenizer.bosTokenID
    }

    // MARK: Building

    public func build(_ specs: [DatasetSpec]) throws -> PreparedDataset {
        guard !specs.isEmpty else { throw DataError("no datasets given", fix: "add at least one entry to `datasets:`") }
        var out = PreparedDataset()
        var examples: [TokenizedExample] = []
        var origins: [ExampleOrigin] = []
        for (k, spec) in specs.enumerated() {
            var (ex, or, stats, warnings, problems) = try buildOne(spec)
            if let w = spec.weight, w != 1 {
                guard w.isFinite, w >= 0 else {
                    throw DataError(file: spec.path, field: "weight", "weight \(w) is not a non-negative number", fix: "use e.g. 0.5 or 2")
                }
                let picked = Self.weightedIndices(count: ex.count, weight: w, seed: options.seed &+ UInt64(k))
                ex = picked.map { ex[$0] }
                or = picked.map { or[$0] }
            }
            examples += ex
            origins += or
            out.stats.append(stats)
            out.warnings += warnings
            out.problems += problems
        }
        if options.refuseOnProblems, let p = out.problems.first { throw p }
        try Self.split(examples, origins: origins, options: options, into: &out)
        return out
    }

    /// The seeded validation split (`val_set_size`) of the examples, and the content hash.
    static func split(_ examples: [TokenizedExample], origins: [ExampleOrigin], options: DataOptions, into out: inout PreparedDataset) throws {
        let n = examples.count
        let isVal = try validationMask(count: n, options: options)
        for i in 0..<n {
            if isVal[i] { out.validation.append(examples[i]); out.validationOrigins.append(origins[i]) }
            else { out.train.append(examples[i]); out.trainOrigins.append(origins[i]) }
        }
        out.hash = PreparedDataset.contentHash(train: out.train, validation: out.validation)
    }

    /// Which of `count` examples the seeded validation split (`val_set_size`) takes.
    static func validationMask(count n: Int, options: DataOptions) throws -> [Bool] {
        let v = options.valSetSize
        guard v >= 0, v.isFinite else { throw DataError(field: "val_set_size", "must be ≥ 0, got \(v)", fix: "use a fraction below 1 or a row count") }
        let valCount = v < 1 ? Int((Double(n) * v).rounded()) : Int(v)
        if valCount >= n && valCount > 0 {
            throw DataError(field: "val_set_size", "\(valCount) validation rows leave none of the \(n) for training",
                            fix: "use a smaller val_set_size (e.g. 0.05)")
        }
        var isVal = [Bool](repeating: false, count: n)
        if valCount > 0 {
            var rng = SplitMix64(seed: options.seed)
            var order = Array(0..<n)
            order.shuffle(using: &rng)
            for i in order.prefix(valCount) { isVal[i] = true }
        }
        return isVal
    }

    /// One dataset entry: its examples (in row order), origins, stats, warnings and refusal reasons.
    /// With a `sink`, each example goes there as it is made instead (the returned lists stay
    /// empty): the streaming pass of `TokenCache` holds no example in memory.
    func buildOne(_ spec: DatasetSpec, sink: ((TokenizedExample, ExampleOrigin) throws -> Void)? = nil) throws
        -> ([TokenizedExample], [ExampleOrigin], DatasetStats, [String], [DataError]) {
        var stats = DatasetStats(path: spec.path)
        var exampleCount = 0
        var examples: [TokenizedExample] = []
        var origins: [ExampleOrigin] = []
        var lengths: [Int] = []
        var placeholders = Set<String>()
        var placeholderRows = 0
        var warnings: [String] = []
        stats.files = try datasetFiles(spec)
        var explicit: DataFormat? = nil
        if let t = spec.type {
            guard let f = DataFormat(typeName: t) else {
                throw DataError(file: spec.path, field: "type", "unknown type `\(t)`",
                                fix: "use one of alpaca, sharegpt, messages (chat_template), completion (text), prompt_completion, input_output, or remove `type` to detect it")
            }
            explicit = f
        }
        var formats: [DataFormat] = []
        var bytesDone: Int64 = 0
        fileLoop: for file in stats.files {
            let reader = try RowReader(path: file)
            reader.rows = try spec.rowSlice()
            defer { bytesDone += TokenCache.fileSize(file) }
            // Look at the first rows to detect the format.
            var pending: [Result<RawRow, DataError>] = []
            while pending.count < 8, let r = try reader.next() { pending.append(r) }
            let goodRows = pending.compactMap { try? $0.get() }
            let format: DataFormat
            if let explicit { format = explicit }
            else if goodRows.isEmpty {
                if case .failure(let e)? = pending.first { if !options.skipBadRows { throw e } }
                continue
            } else { format = try FormatDetector.detect(goodRows, fields: Fields(map: spec.fieldMap), file: file) }
            if format.isPreference {
                let what = format == .kto ? "KTO data (a boolean `label` per row)" : "preference pairs (`chosen`/`rejected`)"
                throw DataError(file: file, "holds \(what), which SFT cannot train",
                                fix: format == .kto ? "set `rl: kto` in the config to train it with KTO, or remove this dataset"
                                    : "set `rl: dpo` (or ipo, orpo, simpo) in the config to train it with a preference objective, or remove this dataset")
            }
            formats.append(format)
            // Chat formats need a template: refuse up front rather than fail (or skip) every row.
            if template == nil, [.alpaca, .sharegpt, .messages].contains(format) {
                var e = templateError ?? DataError("no chat template")
                e.message = "\((file as NSString).lastPathComponent) is \(format.typeName) data, rendered with a chat template, but " + e.message
                throw e
            }
            let converter = RowConverter(format: format, spec: spec,
                                         templateHandlesToolCalls: template?.source.contains("tool_calls") ?? false,
                                         trainOnInputs: options.trainOnInputs)
            var index = 0
            while true {
                let next: Result<RawRow, DataError>
                if index < pending.count { next = pending[index]; index += 1 }
                else if let r = try reader.next() { next = r }
                else { break }
                if let m = options.maxRows, stats.rows >= m { break fileLoop }
                stats.rows += 1
                if stats.rows % 4096 == 0, let rowProgress { rowProgress(file, bytesDone + reader.bytesRead, stats.rows) }
                do {
                    let raw = try next.get()
                    var found = Set<String>()
                    unfilledPlaceholders(spec.variables.isEmpty ? raw.value : converter.substitute(raw.value), into: &found)
                    if !found.isEmpty { placeholderRows += 1; placeholders.formUnion(found) }
                    let sample = try converter.convert(raw)
                    try RowChecks.requireTrainableTurn(sample, raw: raw, options: options)
                    let r = try tokenize(sample, raw: raw)
                    lengths.append(r.fullLength)
                    guard var ex = r.example else { stats.dropped += 1; continue }
                    if r.fullLength > options.sequenceLen { stats.truncated += 1 }
                    if ex.ids.count > options.sequenceLen {  // cannot happen; keep the invariant anyway
                        ex = TokenizedExample(ids: Array(ex.ids.prefix(options.sequenceLen)), labels: Array(ex.labels.prefix(options.sequenceLen)))
                    }
                    let trained = ex.trainedTokenCount
                    if trained == 0 { stats.fullyMasked += 1 }
                    stats.trainedTokens += trained
                    stats.totalTokens += ex.ids.count
                    exampleCount += 1
                    if let sink { try sink(ex, ExampleOrigin(file: raw.file, row: raw.row)); continue }
                    examples.append(ex)
                    origins.append(ExampleOrigin(file: raw.file, row: raw.row))
                } catch let e as DataError {
                    if !options.skipBadRows { throw e }
                    stats.recordBadRow(e)
                }
            }
        }
        stats.examples = exampleCount
        stats.lengths = LengthSummary(lengths)
        stats.format = Set(formats).map(\.typeName).sorted().joined(separator: ", ")
        stats.unfilledPlaceholders = placeholders.sorted()
        if !placeholders.isEmpty {
            let names = stats.unfilledPlaceholders
            warnings.append("\(spec.path): \(placeholderRows) of \(stats.rows) rows contain unfilled placeholders \(names.map { "{{\($0)}}" }.joined(separator: ", ")); set them with `variables: {\(names.map { "\($0): …" }.joined(separator: ", "))}` in the dataset entry")
        }
        if stats.badRows > 0 {
            warnings.append("\(spec.path): skipped \(stats.badRows) bad rows; first: \(stats.badRowErrors.first ?? "")")
        }
        if stats.dropped > 0 {
            warnings.append("\(spec.path): dropped \(stats.dropped) rows longer than sequence_len \(options.sequenceLen)")
        }
        var problems: [DataError] = []
        let f = stats.files.count == 1 ? stats.files[0] : spec.path
        if exampleCount == 0 {
            problems.append(DataError(file: f, "produced no training examples (\(stats.rows) rows, \(stats.badRows) bad, \(stats.dropped) too long)",
                                      fix: stats.badRows > 0 ? "fix the rows: \(stats.badRowErrors.first ?? "")" : "check the file and sequence_len"))
        } else if stats.trainedTokens == 0 {
            problems.append(DataError(file: f, "no token is trained: every label is masked",
                                      fix: "check `roles_to_train` (now \(options.rolesToTrain)), per-message `loss_weight`/`train` flags, or set `train_on_inputs: true`"))
        } else if Double(stats.fullyMasked) > options.maxMaskedRowShare * Double(exampleCount) {
            problems.append(DataError(file: f, "\(stats.fullyMasked) of \(exampleCount) rows have no trained token",
                                      fix: "check `roles_to_train` (now \(options.rolesToTrain)) and the per-message flags, or drop those rows"))
        }
        if stats.rows - stats.badRows > 0 && stats.truncatedShare > options.maxTruncatedShare {
            problems.append(DataError(file: f, "sequence_len \(options.sequenceLen) cuts or drops \(Int((stats.truncatedShare * 100).rounded()))% of the rows (p95 length \(stats.lengths.p95) tokens)",
                                      fix: "raise sequence_len to about \(stats.recommendedSequenceLen), or shorten the rows"))
        }
        return (examples, origins, stats, warnings, problems)
    }

    // MARK: Tokenizing

    struct Tokenized {
        var example: TokenizedExample?
        var fullLength: Int
    }

    /// Renders, tokenizes, labels and truncates one sample; `example` nil = dropped for length.
    func tokenize(_ sample: Sample, raw: RawRow) throws -> Tokenized {
        switch sample {
        case .plain(let segments, let appendEOS):
            var (ids, labels) = encodePlain(segments, appendEOS: appendEOS)
            let full = ids.count
            if full > options.sequenceLen {
                if options.truncation == .drop { return Tokenized(example: nil, fullLength: full) }
                ids = Array(ids.prefix(options.sequenceLen)); labels = Array(labels.prefix(options.sequenceLen))
                if !labels.contains(where: { $0 >= 0 }) { return Tokenized(example: nil, fullLength: full) }
            }
            return Tokenized(example: TokenizedExample(ids: ids, labels: labels), fullLength: full)
        case .chat(let messages, let train, let tools):
            guard let template else { throw templateError ?? DataError("no chat template") }
            let (ids, labels, turnEnds) = try encodeChat(messages: messages, train: train, tools: tools, template: template, raw: raw)
            let full = ids.count
            if full > options.sequenceLen {
                if options.truncation == .drop { return Tokenized(example: nil, fullLength: full) }
                // Keep whole turns: cut after the last trained turn that fits.
                guard let cut = turnEnds.filter({ $0 <= options.sequenceLen }).max(), cut > 0,
                      labels[..<cut].contains(where: { $0 >= 0 }) else {
                    return Tokenized(example: nil, fullLength: full)
                }
                return Tokenized(example: TokenizedExample(ids: Array(ids[..<cut]), labels: Array(labels[..<cut])), fullLength: full)
            }
            return Tokenized(example: TokenizedExample(ids: ids, labels: labels), fullLength: full)
        }
    }

    func encodePlain(_ segments: [(text: String, trained: Bool)], appendEOS: Bool) -> ([Int32], [Int32]) {
        var text = ""
        var trained: [Range<Int>] = []
        var pos = 0
        for s in segments {
            let n = s.text.unicodeScalars.count
            if s.trained || options.trainOnInputs { trained.append(pos..<(pos + n)) }
            text += s.text
            pos += n
        }
        let (ids, offsets) = tokenizer.encodeWithOffsets(text, addSpecialTokens: false)
        var outIDs: [Int32] = []
        var labels: [Int32] = []
        if addsBOS, let bos = tokenizer.bosTokenID, ids.first != bos {
            outIDs.append(Int32(bos)); labels.append(-100)
        }
        for (id, off) in zip(ids, offsets) {
            outIDs.append(Int32(id))
            labels.append(trained.contains { $0.contains(off.lowerBound) } ? Int32(id) : -100)
        }
        if appendEOS, let eos = tokenizer.eosTokenID {
            outIDs.append(Int32(eos)); labels.append(Int32(eos))
        }
        return (outIDs, labels)
    }

    /// Ids, labels and, per trained turn, the token index where the turn ends.
    func encodeChat(messages: [JinjaValue], train: [Bool?], tools: [JinjaValue]?, template: ChatTemplate, raw: RawRow) throws
        -> ([Int32], [Int32], [Int]) {
        let rendered: RenderedConversation
        do {
            rendered = try template.renderWithAssistantSpans(messages: messages, tools: tools)
        } catch {
            throw DataError(file: raw.file, row: raw.row, "the chat template failed on this row: \(error)",
                            fix: "check the roles and their order (many templates need user/assistant to alternate), or remove the row",
                            reason: .templateFailed)
        }
        let text = rendered.text
        // Which messages are trained.
        var trainable = messages.indices.map { i -> Bool in
            if let f = train[i] { return f }
            if options.trainOnInputs { return true }
            return options.rolesToTrain.contains(messages[i]["role"]?.stringValue ?? "")
        }
        if options.lastTurnOnly, let last = trainable.lastIndex(of: true) {
            for i in trainable.indices where i != last { trainable[i] = false }
        }
        let (ids, offsets) = tokenizer.encodeWithOffsets(text, addSpecialTokens: false)
        let starts = offsets.map(\.lowerBound)
        /// Token indices whose start lies in `r`.
        func tokens(in r: Range<Int>) -> Range<Int> {
            func firstAtLeast(_ x: Int) -> Int {
                var lo = 0, hi = starts.count
                while lo < hi { let m = (lo + hi) / 2; if starts[m] < x { lo = m + 1 } else { hi = m } }
                return lo
            }
            return firstAtLeast(r.lowerBound)..<firstAtLeast(r.upperBound)
        }
        var trained = [Bool](repeating: false, count: ids.count)
        var eotTokens: [[Int]] = []  // per trained turn
        var turnEnds: [Int] = []
        let scalars = Array(text.unicodeScalars)
        var fullScalars: [Unicode.Scalar]? = nil
        for i in messages.indices where trainable[i] {
            let body: Range<Int>, turnEnd: Int
            if let span = rendered.spans.first(where: { $0.messageIndex == i }) {
                body = span.content.isEmpty ? span.completion.lowerBound..<span.completion.lowerBound : span.content
                turnEnd = span.turn.upperBound
            } else {
                if fullScalars == nil { fullScalars = scalars }
                (body, turnEnd) = messageSpan(i, messages: messages, tools: tools, template: template, full: scalars)
            }
            for t in tokens(in: body) { trained[t] = true }
            // End-of-turn: the tail's tokens through its last special token; without one, through its last non-space.
            let tail = tokens(in: body.upperBound..<max(body.upperBound, turnEnd))
            var eot: [Int] = []
            if let lastSpecial = tail.last(where: { tokenizer.isSpecial(ids[$0]) || ids[$0] == tokenizer.eosTokenID }) {
                eot = Array(tail.lowerBound...lastSpecial)
            } else {
                var end = max(body.upperBound, turnEnd)
                while end > body.upperBound && end <= scalars.count && scalars[end - 1].properties.isWhitespace { end -= 1 }
                eot = Array(tokens(in: body.upperBound..<end))
            }
            eotTokens.append(eot)
            turnEnds.append(tokens(in: 0..<turnEnd).upperBound)
        }
        switch options.trainOnEOS {
        case .turn: for e in eotTokens { for t in e { trained[t] = true } }
        case .last: for t in eotTokens.last ?? [] { trained[t] = true }
        case .none: break
        case .all:
            for e in eotTokens { for t in e { trained[t] = true } }
            var eotIDs = Set(eotTokens.flatMap { $0 }.map { ids[$0] }.filter { tokenizer.isSpecial($0) || $0 == tokenizer.eosTokenID })
            if eotIDs.isEmpty, let eos = tokenizer.eosTokenID { eotIDs.insert(eos) }
            for (t, id) in ids.enumerated() where eotIDs.contains(id) { trained[t] = true }
        }
        var outIDs = ids.map { Int32($0) }
        var labels = zip(ids, trained).map { $1 ? Int32($0) : -100 }
        if addsBOS, let bos = tokenizer.bosTokenID, ids.first != bos {
            outIDs.insert(Int32(bos), at: 0); labels.insert(-100, at: 0)
            turnEnds = turnEnds.map { $0 + 1 }
        }
        return (outIDs, labels, turnEnds)
    }

    /// Where a non-assistant message's content and turn lie, by rendering prefixes of the conversation.
    func messageSpan(_ i: Int, messages: [JinjaValue], tools: [JinjaValue]?, template: ChatTemplate,
                     full: [Unicode.Scalar]) -> (Range<Int>, Int) {
        func common(_ b: [Unicode.Scalar]) -> Int {
            var n = 0
            while n < full.count && n < b.count && full[n] == b[n] { n += 1 }
            return n
        }
        let before = (try? template.render(messages: Array(messages[..<i]), tools: tools)).map { Array($0.unicodeScalars) } ?? []
        let start = i == 0 ? 0 : common(before)
        let upTo = (try? template.render(messages: Array(messages[...i]), tools: tools)).map { Array($0.unicodeScalars) } ?? full
        let end = max(start, common(upTo))
        let content = Array((messages[i]["content"]?.stringValue ?? "").unicodeScalars)
        if !content.isEmpty && end - start >= content.count {
            var p = start
            while p + content.count <= end {
                if full[p] == content[0] && Array(full[p..<(p + content.count)]) == content {
                    return (p..<(p + content.count), end)
                }
                p += 1
            }
        }
        return (start..<start, end)
    }

    // MARK: Preview

    /// The first `rows` examples of one dataset entry, with the text they came from.
    public func preview(_ spec: DatasetSpec, rows: Int) throws -> [(origin: ExampleOrigin, example: TokenizedExample)] {
        var o = options
        o.maxRows = rows
        o.refuseOnProblems = false
        o.skipBadRows = false
        let b = try DatasetBuilder(tokenizer: tokenizer, template: template, options: o)
        let (ex, or, _, _, _) = try b.buildOne(spec)
        return Array(zip(or, ex))
    }

    /// The indices kept when mixing with a weight: whole repeats plus a seeded sample for the fraction.
    static func weightedIndices(count n: Int, weight w: Double, seed: UInt64) -> [Int] {
        let whole = Int(w.rounded(.down))
        var out: [Int] = []
        for _ in 0..<whole { out += Array(0..<n) }
        let extra = Int((Double(n) * (w - Double(whole))).rounded())
        if extra > 0 {
            var rng = SplitMix64(seed: seed)
            var order = Array(0..<n)
            order.shuffle(using: &rng)
            out += order.prefix(extra).sorted()
        }
        return out
    }
}

extension PreparedDataset {
    /// SHA-256 over each example's length, ids and labels (little-endian Int32), train then validation.
    public static func contentHash(train: [TokenizedExample], validation: [TokenizedExample]) -> String {
        var h = DatasetContentHash()
        h.begin(train: true)
        for e in train { h.add(e) }
        h.begin(train: false)
        for e in validation { h.add(e) }
        return h.hex()
    }
}

/// `PreparedDataset.contentHash` fed one example at a time (for sets read from disk).
struct DatasetContentHash {
    private var sha = SHA256()
    private var bytes: [UInt8] = []

    mutating func begin(train: Bool) { sha.update([UInt8(ascii: train ? "T" : "V")]) }

    mutating func add(_ e: TokenizedExample) {
        bytes.removeAll(keepingCapacity: true)
        bytes.reserveCapacity(4 + e.ids.count * 8)
        func put(_ v: Int32) { let u = UInt32(bitPattern: v); bytes += [UInt8(u & 0xff), UInt8((u >> 8) & 0xff), UInt8((u >> 16) & 0xff), UInt8(u >> 24)] }
        put(Int32(truncatingIfNeeded: e.ids.count))
        for v in e.ids { put(v) }
        for v in e.labels { put(v) }
        sha.update(bytes)
    }

    mutating func hex() -> String { sha.finalize().map { String(format: "%02x", $0) }.joined() }
}

extension DatasetBuilder {
    /// Reads and converts a dataset without a tokenizer: format, rows, bad rows and
    /// placeholders (token statistics stay zero). For `loft data check` without a model.
    /// `options` decide which turns are trained (a conversation with none is a bad row).
    public static func scan(_ spec: DatasetSpec, maxRows: Int? = nil, options: DataOptions = DataOptions()) throws -> DatasetStats {
        var stats = DatasetStats(path: spec.path)
        stats.files = try datasetFiles(spec)
        var formats = Set<String>()
        var placeholders = Set<String>()
        for file in stats.files {
            let reader = try RowReader(path: file)
            reader.rows = try spec.rowSlice()
            var pending: [Result<RawRow, DataError>] = []
            while pending.count < 8, let r = try reader.next() { pending.append(r) }
            let good = pending.compactMap { try? $0.get() }
            let format: DataFormat
            if let t = spec.type {
                guard let f = DataFormat(typeName: t) else {
                    throw DataError(file: spec.path, field: "type", "unknown type `\(t)`",
                                    fix: "use one of alpaca, sharegpt, messages (chat_template), completion (text), prompt_completion, input_output, or remove `type` to detect it")
                }
                format = f
            } else if good.isEmpty { continue } else {
                format = try FormatDetector.detect(good, fields: Fields(map: spec.fieldMap), file: file)
            }
            formats.insert(format.typeName)
            let converter = RowConverter(format: format, spec: spec, templateHandlesToolCalls: false, trainOnInputs: options.trainOnInputs)
            var i = 0
            while true {
                let next: Result<RawRow, DataError>
                if i < pending.count { next = pending[i]; i += 1 } else if let r = try reader.next() { next = r } else { break }
                if let m = maxRows, stats.rows >= m { break }
                stats.rows += 1
                do {
                    let raw = try next.get()
                    if format.isPreference {
                        // Preference rows are checked, not converted (SFT does not train them).
                        try RowChecks.checkPreferenceRow(raw, format: format, fields: Fields(map: spec.fieldMap))
                        stats.examples += 1
                        continue
                    }
                    unfilledPlaceholders(spec.variables.isEmpty ? raw.value : converter.substitute(raw.value), into: &placeholders)
                    let sample = try converter.convert(raw)
                    try RowChecks.requireTrainableTurn(sample, raw: raw, options: options)
                    stats.examples += 1
                } catch let e as DataError {
                    stats.recordBadRow(e)
                }
            }
        }
        stats.format = formats.sorted().joined(separator: ", ")
        stats.unfilledPlaceholders = placeholders.sorted()
        return stats
    }
}
