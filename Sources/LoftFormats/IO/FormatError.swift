import Foundation

/// Every problem with a model or tokenizer file. Each case carries the file and
/// a message that says what is wrong and, where there is one, the fix.
public struct FormatError: Error, CustomStringConvertible, Equatable {
    public let file: String
    public let message: String

    public init(_ file: String, _ message: String) {
        self.file = file
        self.message = message
    }

    public var description: String { "\(file): \(message)" }
}
