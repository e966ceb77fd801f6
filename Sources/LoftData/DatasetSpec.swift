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
