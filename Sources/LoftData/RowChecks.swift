import Foundation
import LoftTemplates

/// The kinds of bad rows: `loft data check` counts rows by these, and so do the
/// dataset statistics, so that a user sees "37 rows: message has no content"
/// rather than 37 separate lines.
public enum BadRowReason: String, Sendable, Codable, CaseIterable {
    /// Invalid JSON, invalid UTF-8, a CSV record with the wrong number of columns.
    case unreadable = "unreadable"
    /// The row has the keys of another format than the configured `type:`.
    case wrongFormat = "wrong_format"
    /// A field the format needs is missing.
    case missingField = "missing_field"
    /// A field has the wrong type (a list where text is expected…).
    case wrongType = "wrong_type"
    /// A message without `content` (or with null content), not a tool call.
    case missingContent = "missing_content"
    /// A message whose content is a number, boolean or object where text is expected.
    case nonStringContent = "non_string_content"
    /// A role no mapping names (or no role at all).
    case unknownRole = "unknown_role"
    case emptyConversation = "empty_conversation"
    /// A conversation in which no message is trained (no assistant reply).
    case noTrainableTurn = "no_trainable_turn"
    /// A preference row without both `chosen` and `rejected`.
    case missingPreferencePair = "missing_chosen_or_rejected"
    /// A KTO row whose `label` is not true or false.
    case ktoLabelNotBoolean = "kto_label_not_boolean"
    /// The chat template raised an error on the row.
    case templateFailed = "template_failed"
}

/// Where a bad row is.
public struct BadRowPlace: Sendable, Codable, Equatable {
    public var file: String
    public var row: Int
}

/// The bad rows of one reason: how many, the first few, and the first one's message.
public struct BadRowTally: Sendable, Codable, Equatable {
    public var reason: BadRowReason
    public var count = 0
    /// The first `BadRowTally.keptPlaces` rows.
    public var rows: [BadRowPlace] = []
    /// The first such row's full error (file, row, field, message and fix).
    public var first = ""

    public static let keptPlaces = 5
}

extension DatasetStats {
    /// Counts a bad row under its reason and keeps the first errors.
    mutating func recordBadRow(_ e: DataError) {
        badRows += 1
        if badRowErrors.count < 5 { badRowErrors.append(e.description) }
        let reason = e.reason ?? .wrongType
        var k = badRowReasons.firstIndex { $0.reason == reason }
        if k == nil {
            badRowReasons.append(BadRowTally(reason: reason, first: e.description))
            k = badRowReasons.count - 1
        }
        badRowReasons[k!].count += 1
        if badRowReasons[k!].rows.count < BadRowTally.keptPlaces, let row = e.row {
            badRowReasons[k!].rows.append(BadRowPlace(file: e.file ?? path, row: row))
        }
    }

    /// "3 rows: missing_content (rows 4, 9, 12), 1 row: unreadable (row 2)".
    public var badRowSummary: String {
        badRowReasons.map { t in
            let rows = t.rows.map { String($0.row) }.joined(separator: ", ")
            return "\(t.count) row\(t.count == 1 ? "" : "s"): \(t.reason.rawValue) (row\(t.rows.count == 1 ? "" : "s") \(rows)\(t.count > t.rows.count ? ", …" : ""))"
        }.joined(separator: "; ")
    }
}

extension Sample {
    /// Whether some message of a chat sample is trained under these options
    /// (plain-text samples always are).
    func hasTrainableTurn(rolesToTrain: [String], trainOnInputs: Bool) -> Bool {
        guard case .chat(let messages, let train, _) = self else { return true }
        return messages.indices.contains { i in
            train[i] ?? (trainOnInputs || rolesToTrain.contains(messages[i]["role"]?.stringValue ?? ""))
        }
    }
}

enum RowChecks {
    /// A conversation with nothing to train on is a bad row: training on it
    /// would only spend compute (and with every row like it, nothing is learnt).
    static func requireTrainableTurn(_ sample: Sample, raw: RawRow, options: DataOptions) throws {
        guard !sample.hasTrainableTurn(rolesToTrain: options.rolesToTrain, trainOnInputs: options.trainOnInputs),
              case .chat(let messages, _, _) = sample else { return }
        var roles: [String] = []
        for m in messages { if let r = m["role"]?.stringValue, !roles.contains(r) { roles.append(r) } }
        throw DataError(file: raw.file, row: raw.row,
                        "the conversation has no turn to train on: its roles are \(roles.joined(separator: ", ")) and roles_to_train is [\(options.rolesToTrain.joined(separator: ", "))]",
                        fix: "end it with an assistant reply, set `roles_to_train` (or a message's `train: true`), or remove the row (skip_bad_rows: true / --skip-bad-rows)",
                        reason: .noTrainableTurn)
    }

    /// A preference (DPO/ORPO) row needs both answers; a KTO row a boolean label.
    static func checkPreferenceRow(_ raw: RawRow, format: DataFormat, fields: Fields) throws {
        guard case .object(let row) = raw.value else {
            throw DataError(file: raw.file, row: raw.row, "the row is a \(typeName(raw.value)), not an object",
                            fix: "each row must be a JSON object; fix or remove it", reason: .wrongType)
        }
        switch format {
        case .preference:
            let pairs = [("chosen", "rejected"), ("chosen_messages", "rejected_messages")]
            let present = pairs.first { fields.get(row, $0.0) != nil || fields.get(row, $0.1) != nil } ?? pairs[0]
            for key in [present.0, present.1] {
                guard let v = fields.get(row, key) else {
                    throw DataError(file: raw.file, row: raw.row, field: fields.name(key), "the preference row has no `\(fields.name(key))`",
                                    fix: "give every row both `\(fields.name(present.0))` and `\(fields.name(present.1))`, or remove the row (skip_bad_rows: true / --skip-bad-rows)",
                                    reason: .missingPreferencePair)
                }
                let empty: Bool
                switch v {
                case .string(let s): empty = s.isEmpty
                case .array(let a): empty = a.isEmpty
                case .object: empty = false
                default:
                    throw DataError(file: raw.file, row: raw.row, field: fields.name(key), "expected text or messages, found a \(typeName(v))",
                                    fix: "make `\(fields.name(key))` a string or a list of {role, content}", reason: .wrongType)
                }
                if empty {
                    throw DataError(file: raw.file, row: raw.row, field: fields.name(key), "`\(fields.name(key))` is empty",
                                    fix: "give the row a non-empty answer, or remove it", reason: .missingPreferencePair)
                }
            }
        case .kto:
            guard let label = fields.get(row, "label") else {
                throw DataError(file: raw.file, row: raw.row, field: fields.name("label"), "the KTO row has no `\(fields.name("label"))`",
                                fix: "give every row `\"label\": true` (desirable) or `false` (undesirable)", reason: .ktoLabelNotBoolean)
            }
            guard case .bool = label else {
                throw DataError(file: raw.file, row: raw.row, field: fields.name("label"), "the KTO label is a \(typeName(label)) (\(label.jsonText())), not true or false",
                                fix: "write it as the JSON boolean true or false (not a string or a number)", reason: .ktoLabelNotBoolean)
            }
        default:
            return
        }
    }
}
