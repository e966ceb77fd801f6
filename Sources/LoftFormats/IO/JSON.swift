import Foundation

/// A parsed JSON value. Objects keep their keys in file order; integers that fit
/// in Int64 stay exact (a safetensors offset or shape is never rounded through Double).
public indirect enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)

    public var string: String? { if case .string(let s) = self { return s }; return nil }
    public var bool: Bool? { if case .bool(let b) = self { return b }; return nil }
    public var array: [JSONValue]? { if case .array(let a) = self { return a }; return nil }
    public var object: JSONObject? { if case .object(let o) = self { return o }; return nil }
    /// An integer, also from a float literal with no fractional part (`2.0`).
    public var int: Int? {
        switch self {
        case .int(let v): return Int(exactly: v)
        case .double(let d): return d.rounded() == d && abs(d) < 9.0e15 ? Int(d) : nil
        default: return nil
        }
    }
    public var double: Double? {
        switch self {
        case .int(let v): return Double(v)
        case .double(let d): return d
        default: return nil
        }
    }

    public subscript(key: String) -> JSONValue? { object?[key] }

    /// A short description of the value's kind, for error messages.
    public var kind: String {
        switch self {
        case .null: return "null"
        case .bool: return "a boolean"
        case .int, .double: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }
}

/// A JSON object with its keys in file order.
public struct JSONObject: Equatable, Sendable {
    public private(set) var keys: [String] = []
    public private(set) var values: [String: JSONValue] = [:]

    public init() {}
    public subscript(key: String) -> JSONValue? { values[key] }
    public var count: Int { keys.count }

    /// Adds a key; returns false when it was already there (the first value is kept).
    @discardableResult
    public mutating func insert(_ key: String, _ value: JSONValue) -> Bool {
        guard values[key] == nil else { return false }
        keys.append(key)
        values[key] = value
        return true
    }
}

/// A strict RFC 8259 JSON parser with error messages that give the byte offset.
/// Rejects invalid UTF-8, raw control characters in strings, trailing garbage
/// (whitespace is allowed), duplicate object keys, and nesting deeper than 128.
public struct JSONParser {
    public struct Error: Swift.Error, CustomStringConvertible {
        public let message: String
        public let offset: Int
        public var description: String { "\(message) at byte \(offset)" }
    }

    let bytes: UnsafeRawBufferPointer
    var i = 0
    var depth = 0
    static let maxDepth = 128

    public static func parse(_ bytes: UnsafeRawBufferPointer) throws -> JSONValue {
        var p = JSONParser(bytes: bytes)
        p.skipSpace()
        let v = try p.value()
        p.skipSpace()
        guard p.i == bytes.count else { throw p.fail("unexpected '\(p.printable(p.bytes[p.i]))' after the end of the JSON value") }
        return v
    }

    public static func parse(_ data: Data) throws -> JSONValue {
        try data.withUnsafeBytes { try parse($0) }
    }

    public static func parse(_ text: String) throws -> JSONValue {
        var s = text
        return try s.withUTF8 { try parse(UnsafeRawBufferPointer($0)) }
    }

    /// The entries of the object reached from the root by `path` (each step a
    /// key of an object), in file order with keys exactly as spelled, or nil
    /// when the document has no object there. Unlike `parse`, keys that are
    /// canonically equal but spelled apart stay apart (a Swift dictionary, and
    /// so `parse`'s duplicate check, takes "য়" precomposed and decomposed for
    /// one key); a tokenizer.json vocabulary holds such pairs as two tokens.
    public static func entries(at path: [String], in data: Data) throws -> [(key: String, value: JSONValue)]? {
        try data.withUnsafeBytes { bytes in
            var p = JSONParser(bytes: bytes)
            return try p.entries(at: path[...])
        }
    }

    mutating func entries(at path: ArraySlice<String>) throws -> [(key: String, value: JSONValue)]? {
        skipSpace()
        guard i < bytes.count, bytes[i] == UInt8(ascii: "{") else { _ = try value(); return nil }
        try nest()
        defer { depth -= 1 }
        i += 1
        var out: [(key: String, value: JSONValue)] = []
        var found: [(key: String, value: JSONValue)]?
        skipSpace()
        if i < bytes.count, bytes[i] == UInt8(ascii: "}") { i += 1; return path.isEmpty ? out : nil }
        while true {
            skipSpace()
            guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { throw fail("expected a string key in an object") }
            let key = try string()
            skipSpace()
            guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { throw fail("expected ':' after the object key \"\(key)\"") }
            i += 1
            if path.isEmpty {
                skipSpace()
                out.append((key, try value()))
            } else if key == path.first, found == nil {
                found = try entries(at: path.dropFirst())
            } else {
                try skipValue()
            }
            skipSpace()
            guard i < bytes.count else { throw fail("unexpected end of JSON inside an object") }
            if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
            if bytes[i] == UInt8(ascii: "}") { i += 1; return path.isEmpty ? out : found }
            throw fail("expected ',' or '}' in an object, found '\(printable(bytes[i]))'")
        }
    }

    /// Steps over one value without building it (`entries` passes a
    /// tokenizer.json's half a million merges this way); strictness is `parse`'s job.
    mutating func skipValue() throws {
        skipSpace()
        var open = 0
        repeat {
            guard i < bytes.count else { throw fail("unexpected end of JSON") }
            switch bytes[i] {
            case UInt8(ascii: "\""):
                i += 1
                while i < bytes.count, bytes[i] != UInt8(ascii: "\"") { i += bytes[i] == UInt8(ascii: "\\") ? 2 : 1 }
                i += 1
            case UInt8(ascii: "{"), UInt8(ascii: "["): open += 1; i += 1
            case UInt8(ascii: "}"), UInt8(ascii: "]"): open -= 1; i += 1
            default:
                if open == 0 {  // a number or literal at the top: up to the next separator
                    while i < bytes.count, ![UInt8(ascii: ","), UInt8(ascii: "}"), UInt8(ascii: "]"), 0x20, 0x09, 0x0A, 0x0D].contains(bytes[i]) { i += 1 }
                } else {
                    i += 1
                }
            }
        } while open > 0
    }

    func fail(_ message: String) -> Error { Error(message: message, offset: i) }

    func printable(_ b: UInt8) -> String {
        b >= 0x20 && b < 0x7F ? String(UnicodeScalar(b)) : String(format: "\\x%02X", b)
    }

    mutating func skipSpace() {
        while i < bytes.count {
            switch bytes[i] {
            case 0x20, 0x09, 0x0A, 0x0D: i += 1
            default: return
            }
        }
    }

    mutating func expect(_ literal: StaticString, _ v: JSONValue) throws -> JSONValue {
        let n = literal.utf8CodeUnitCount
        guard i + n <= bytes.count else { throw fail("unexpected end of JSON") }
        let p = literal.utf8Start
        for k in 0 ..< n where bytes[i + k] != p[k] { throw fail("invalid literal, expected \(literal)") }
        i += n
        return v
    }

    mutating func value() throws -> JSONValue {
        guard i < bytes.count else { throw fail("unexpected end of JSON") }
        switch bytes[i] {
        case UInt8(ascii: "{"): return try object()
        case UInt8(ascii: "["): return try array()
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): return try expect("true", .bool(true))
        case UInt8(ascii: "f"): return try expect("false", .bool(false))
        case UInt8(ascii: "n"): return try expect("null", .null)
        case UInt8(ascii: "-"), UInt8(ascii: "0") ... UInt8(ascii: "9"): return try number()
        default: throw fail("unexpected '\(printable(bytes[i]))', expected a JSON value")
        }
    }

    mutating func nest() throws {
        depth += 1
        guard depth <= Self.maxDepth else { throw fail("JSON nested more than \(Self.maxDepth) levels deep") }
    }

    mutating func object() throws -> JSONValue {
        try nest()
        defer { depth -= 1 }
        i += 1
        var obj = JSONObject()
        skipSpace()
        if i < bytes.count, bytes[i] == UInt8(ascii: "}") { i += 1; return .object(obj) }
        while true {
            skipSpace()
            guard i < bytes.count else { throw fail("unexpected end of JSON inside an object") }
            guard bytes[i] == UInt8(ascii: "\"") else { throw fail("expected a string key in an object, found '\(printable(bytes[i]))'") }
            let keyOffset = i
            let key = try string()
            skipSpace()
            guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { throw fail("expected ':' after the object key \"\(key)\"") }
            i += 1
            skipSpace()
            let v = try value()
            guard obj.insert(key, v) else { throw Error(message: "duplicate key \"\(key)\"", offset: keyOffset) }
            skipSpace()
            guard i < bytes.count else { throw fail("unexpected end of JSON inside an object") }
            if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
            if bytes[i] == UInt8(ascii: "}") { i += 1; return .object(obj) }
            throw fail("expected ',' or '}' in an object, found '\(printable(bytes[i]))'")
        }
    }

    mutating func array() throws -> JSONValue {
        try nest()
        defer { depth -= 1 }
        i += 1
        var out: [JSONValue] = []
        skipSpace()
        if i < bytes.count, bytes[i] == UInt8(ascii: "]") { i += 1; return .array(out) }
        while true {
            skipSpace()
            out.append(try value())
            skipSpace()
            guard i < bytes.count else { throw fail("unexpected end of JSON inside an array") }
            if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
            if bytes[i] == UInt8(ascii: "]") { i += 1; return .array(out) }
            throw fail("expected ',' or ']' in an array, found '\(printable(bytes[i]))'")
        }
    }

    mutating func hex4() throws -> UInt32 {
        guard i + 4 <= bytes.count else { throw fail("unexpected end of JSON in a \\u escape") }
        var v: UInt32 = 0
        for _ in 0 ..< 4 {
            let c = bytes[i]
            let d: UInt8
            switch c {
            case UInt8(ascii: "0") ... UInt8(ascii: "9"): d = c - UInt8(ascii: "0")
            case UInt8(ascii: "a") ... UInt8(ascii: "f"): d = c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A") ... UInt8(ascii: "F"): d = c - UInt8(ascii: "A") + 10
            default: throw fail("invalid hex digit '\(printable(c))' in a \\u escape")
            }
            v = v << 4 | UInt32(d)
            i += 1
        }
        return v
    }

    mutating func string() throws -> String {
        i += 1  // opening quote
        var out: [UInt8] = []
        var runStart = i
        while true {
            guard i < bytes.count else { throw fail("unterminated string") }
            let c = bytes[i]
            if c == UInt8(ascii: "\"") {
                out.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[runStart ..< i]))
                i += 1
                break
            }
            if c < 0x20 { throw fail("raw control character \(printable(c)) in a string; it must be escaped") }
            if c != UInt8(ascii: "\\") { i += 1; continue }
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[runStart ..< i]))
            i += 1
            guard i < bytes.count else { throw fail("unterminated string") }
            let e = bytes[i]
            i += 1
            switch e {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5C)
            case UInt8(ascii: "/"): out.append(0x2F)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var u = try hex4()
                if u >= 0xD800, u < 0xDC00 {
                    guard i + 6 <= bytes.count, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") else {
                        throw fail("unpaired high surrogate \\u\(String(u, radix: 16)) in a string")
                    }
                    i += 2
                    let lo = try hex4()
                    guard lo >= 0xDC00, lo < 0xE000 else { throw fail("invalid low surrogate \\u\(String(lo, radix: 16)) in a string") }
                    u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00)
                } else if u >= 0xDC00, u < 0xE000 {
                    throw fail("unpaired low surrogate \\u\(String(u, radix: 16)) in a string")
                }
                guard let scalar = Unicode.Scalar(u) else { throw fail("invalid \\u escape") }
                out.append(contentsOf: Array(String(Character(scalar)).utf8))
            default:
                i -= 1
                throw fail("invalid escape '\\\(printable(e))' in a string")
            }
            runStart = i
        }
        guard let s = String(validating: out, as: UTF8.self) else { throw fail("string is not valid UTF-8") }
        return s
    }

    mutating func number() throws -> JSONValue {
        let start = i
        var isInteger = true
        if bytes[i] == UInt8(ascii: "-") { i += 1 }
        func digits(_ p: inout JSONParser) -> Int {
            let s = p.i
            while p.i < p.bytes.count, p.bytes[p.i] >= UInt8(ascii: "0"), p.bytes[p.i] <= UInt8(ascii: "9") { p.i += 1 }
            return p.i - s
        }
        guard i < bytes.count else { throw fail("unexpected end of JSON in a number") }
        if bytes[i] == UInt8(ascii: "0") {
            i += 1
            if i < bytes.count, bytes[i] >= UInt8(ascii: "0"), bytes[i] <= UInt8(ascii: "9") { throw fail("leading zero in a number") }
        } else if digits(&self) == 0 {
            throw fail("expected digits in a number")
        }
        if i < bytes.count, bytes[i] == UInt8(ascii: ".") {
            isInteger = false
            i += 1
            guard digits(&self) > 0 else { throw fail("expected digits after the decimal point") }
        }
        if i < bytes.count, bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
            isInteger = false
            i += 1
            if i < bytes.count, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") { i += 1 }
            guard digits(&self) > 0 else { throw fail("expected digits in the exponent") }
        }
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start ..< i]), as: UTF8.self)
        if isInteger, let v = Int64(text) { return .int(v) }
        guard let d = Double(text) else { throw Error(message: "invalid number \(text)", offset: start) }
        return .double(d)
    }
}

/// JSON text the way serde_json writes it (the safetensors reference): compact,
/// `"` `\` and control characters escaped (\b \f \n \r \t, else \u00xx), all
/// other characters, non-ASCII included, written as UTF-8.
public enum JSONWriter {
    public static func quoted(_ s: String, into out: inout [UInt8]) {
        out.append(0x22)
        for b in s.utf8 {
            switch b {
            case 0x22: out += [0x5C, 0x22]
            case 0x5C: out += [0x5C, 0x5C]
            case 0x08: out += [0x5C, UInt8(ascii: "b")]
            case 0x0C: out += [0x5C, UInt8(ascii: "f")]
            case 0x0A: out += [0x5C, UInt8(ascii: "n")]
            case 0x0D: out += [0x5C, UInt8(ascii: "r")]
            case 0x09: out += [0x5C, UInt8(ascii: "t")]
            case 0x00 ..< 0x20:
                let hex = Array("0123456789abcdef".utf8)
                out += [0x5C, UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"), hex[Int(b >> 4)], hex[Int(b & 15)]]
            default: out.append(b)
            }
        }
        out.append(0x22)
    }
}
