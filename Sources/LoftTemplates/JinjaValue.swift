import Foundation

/// A JSON-like value handed to a chat template: messages, tools, extra variables.
/// Objects keep their keys in insertion order, because `tojson` output order
/// (and so the rendered prompt) depends on it.
public enum JinjaValue: Equatable, Sendable {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([JinjaValue])
    case object(JinjaObject)

    /// Looks up a key when this is an object.
    public subscript(key: String) -> JinjaValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    public var arrayValue: [JinjaValue]? {
        if case .array(let a) = self { return a }
        return nil
    }
}

/// An insertion-ordered string-keyed map (Python's dict as JSON produces it).
public struct JinjaObject: Equatable, Sendable {
    public private(set) var keys: [String] = []
    private var storage: [String: JinjaValue] = [:]

    public init() {}

    public init(_ pairs: [(String, JinjaValue)]) {
        for (k, v) in pairs { self[k] = v }
    }

    public subscript(key: String) -> JinjaValue? {
        get { storage[key] }
        set {
            if let newValue {
                if storage.updateValue(newValue, forKey: key) == nil { keys.append(key) }
            } else if storage.removeValue(forKey: key) != nil {
                keys.removeAll { $0 == key }
            }
        }
    }

    public var pairs: [(String, JinjaValue)] { keys.map { ($0, storage[$0] ?? .null) } }
    public var count: Int { keys.count }

    public static func == (a: JinjaObject, b: JinjaObject) -> Bool {
        a.storage == b.storage
    }
}

extension JinjaValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByFloatLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByNilLiteral {
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .int(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(arrayLiteral elements: JinjaValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JinjaValue)...) { self = .object(JinjaObject(elements)) }
    public init(nilLiteral: ()) { self = .null }
}

extension JinjaValue {
    /// JSON text in Python `json.dumps` style (`ensure_ascii=False`), keys in insertion order.
    public func jsonText(indent: Int? = nil) -> String {
        let encoder = PyJSON(indent: indent.map { String(repeating: " ", count: $0) })
        return (try? encoder.encode(LoftTemplates.Value(self))) ?? "null"
    }
}
