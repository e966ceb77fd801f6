/// One dataset entry of the config (Axolotl's `datasets:` list).
public struct DatasetSpec: Sendable, Equatable, Codable {
    public var path: String
    /// alpaca, sharegpt, chat_template/messages, completion/text, input_output…; nil = detect.
    public var type: String?
    /// Values for {{placeholders}} in the data (identity.json's {{name}}, {{author}}).
    public var variables: [String: String]
    /// Column renames: Loft's field name → the file's column name.
    /// Loft's names: instruction, input, output, system, messages, conversations,
    /// text, prompt, completion, tools, role, content (message keys), segments.
    public var fieldMap: [String: String]
    /// Extra sharegpt/messages role names → Loft's roles (user, assistant, system, tool);
    /// merged over the defaults (human→user, gpt→assistant, observation→tool, function_call→assistant…).
    public var roleMap: [String: String]?
    /// Mixing weight: 0.5 keeps a seeded half of the rows, 2 repeats them twice; nil = 1.
    public var weight: Double?
    /// Hub datasets (`path: org/name`): the config (`name:`), split (default train),
    /// revision (default main) and file patterns (`data_files:`) to read.
    public var name: String?
    public var split: String?
    public var revision: String?
    public var dataFiles: [String]?
    /// The files `path` stands for, once resolved (Hub downloads, globs); nil = resolve `path`.
    public var resolvedFiles: [String]?

    public init(path: String, type: String? = nil, variables: [String: String] = [:], fieldMap: [String: String] = [:],
                roleMap: [String: String]? = nil, weight: Double? = nil,
                name: String? = nil, split: String? = nil, revision: String? = nil, dataFiles: [String]? = nil) {
        self.name = name
        self.split = split
        self.revision = revision
        self.dataFiles = dataFiles
        self.path = path
        self.type = type
        self.variables = variables
        self.fieldMap = fieldMap
        self.roleMap = roleMap
        self.weight = weight
    }
}

extension DatasetSpec {
    /// The rows `split` selects with Hugging Face's slice syntax
    /// (`train[:250]`, `train[250:]`, `train[10:20]`), for each file of the
    /// entry; nil when it selects no slice. Percentages are refused (the row
    /// count is not known before reading).
    public func rowSlice() throws -> Range<Int>? {
        guard let split, let open = split.firstIndex(of: "["), split.hasSuffix("]") else { return nil }
        let inner = split[split.index(after: open) ..< split.index(before: split.endIndex)]
        let parts = inner.split(separator: ":", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        func bound(_ s: String) -> Int?? { s.isEmpty ? .some(nil) : Int(s).map { .some($0) } ?? .none }
        guard parts.count == 2, let lo = bound(parts[0]), let hi = bound(parts[1]), (lo ?? 0) >= 0, (hi ?? 0) >= 0 else {
            throw DataError(file: path, field: "split", "`\(split)` is not a row slice Loft reads",
                            fix: "use row counts such as `train[:250]`, `train[250:]` or `train[10:20]` (no percentages or negative indices)")
        }
        let range = (lo ?? 0) ..< (hi ?? Int.max)
        guard !range.isEmpty else { throw DataError(file: path, field: "split", "`\(split)` selects no rows", fix: "give a start below the end") }
        return range
    }

    /// The split's name without its slice (`train[:250]` → `train`).
    public var splitName: String? { split.map { String($0.prefix { $0 != "[" }) }.flatMap { $0.isEmpty ? nil : $0 } }
}
