/// One dataset entry of the config (Axolotl's `datasets:` list).
public struct DatasetSpec: Sendable, Equatable, Codable {
    public var path: String
    /// alpaca, sharegpt, chat_template/messages, completion/text, input_output…; nil = detect.
    public var type: String?
    /// Values for {{placeholders}} in the data (identity.json's {{name}}, {{author}}).
    public var variables: [String: String]
    /// Column renames: Loft's field name → the file's column name.
    public var fieldMap: [String: String]

    public init(path: String, type: String? = nil, variables: [String: String] = [:], fieldMap: [String: String] = [:]) {
        self.path = path
        self.type = type
        self.variables = variables
        self.fieldMap = fieldMap
    }
}
