import Foundation

/// Writes one JSON object to stdout: keys sorted, so scripts can diff runs.
func printJSON(_ object: Any) {
    let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
    FileHandle.standardOutput.write(data)
    FileHandle.standardOutput.write(Data("\n".utf8))
}

/// Parses "1,2,3" into token ids, naming the bad item.
func parseIDs(_ text: String) throws -> [Int32] {
    try text.split(separator: ",").map { item in
        let trimmed = item.trimmingCharacters(in: .whitespaces)
        guard let v = Int32(trimmed), v >= 0 else {
            throw CLIError("--ids: '\(trimmed)' is not a token id; give comma-separated non-negative integers like 1,2,3")
        }
        return v
    }
}

struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
}

func writeErr(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}
