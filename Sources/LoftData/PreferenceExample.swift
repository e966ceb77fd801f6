/// One preference example as the model sees it: the prompt's tokens and
/// each completion's tokens after it (the sequences trained are prompt +
/// chosen and prompt + rejected). KTO examples carry one completion in
/// `chosen`, no `rejected`, and a `label` (desirable or not).
public struct PreferenceExample: Sendable, Codable, Equatable {
    public var prompt: [Int32]
    public var chosen: [Int32]
    public var rejected: [Int32]
    /// KTO: whether `chosen` is a desirable completion; nil for pairs.
    public var label: Bool?

    public init(prompt: [Int32], chosen: [Int32], rejected: [Int32], label: Bool? = nil) {
        self.prompt = prompt
        self.chosen = chosen
        self.rejected = rejected
        self.label = label
    }

    /// Tokens of the longest sequence this example trains.
    public var longestSequence: Int { prompt.count + max(chosen.count, rejected.count) }
    /// Tokens of every sequence this example trains (one or two).
    public var totalTokens: Int { prompt.count * (label == nil ? 2 : 1) + chosen.count + rejected.count }
}
