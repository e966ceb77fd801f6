import Foundation

/// A problem with the data or the data configuration. Every message says where
/// (file, row, field) and what to change.
public struct DataError: Error, CustomStringConvertible, Equatable, Sendable {
    public var file: String?
    /// 1-based: the line for JSONL/CSV/text, the array index + 1 for JSON.
    public var row: Int?
    public var field: String?
    public var message: String
    public var fix: String?
    /// For a bad row: what kind of problem it is (`loft data check` counts rows by reason).
    public var reason: BadRowReason?

    public init(file: String? = nil, row: Int? = nil, field: String? = nil, _ message: String, fix: String? = nil,
                reason: BadRowReason? = nil) {
        self.file = file
        self.row = row
        self.field = field
        self.message = message
        self.fix = fix
        self.reason = reason
    }

    public var description: String {
        var place: [String] = []
        if let file { place.append(file) }
        if let row { place.append("row \(row)") }
        if let field { place.append("field `\(field)`") }
        var s = place.isEmpty ? message : place.joined(separator: ", ") + ": " + message
        if let fix { s += "; " + fix }
        return s
    }
}
