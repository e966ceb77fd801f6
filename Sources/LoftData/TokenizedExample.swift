/// One training example as the model sees it: token ids and, aligned with
/// them, labels in Hugging Face's convention (the token itself where it is
/// trained, −100 where it is not; the trainer shifts them by one).
public struct TokenizedExample: Sendable, Codable, Equatable {
    public var ids: [Int32]
    public var labels: [Int32]

    public init(ids: [Int32], labels: [Int32]) {
        precondition(ids.count == labels.count, "ids and labels must have the same length")
        self.ids = ids
        self.labels = labels
    }

    /// Tokens whose label is trained (before the shift).
    public var trainedTokenCount: Int { labels.filter { $0 >= 0 }.count }
}

/// Where an example came from: the file and its 1-based row.
public struct ExampleOrigin: Sendable, Codable, Equatable {
    public var file: String
    public var row: Int
    public init(file: String, row: Int) { self.file = file; self.row = row }
}
