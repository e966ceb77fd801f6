import Foundation

/// Reads JSON into `JinjaValue`, keeping object key order and telling integers
/// from floats (`1` vs `1.0`), which Foundation's JSONSerialization does not.
public enum JSONReader {
    public struct ParseError: Error, CustomStringConvertible {
        public let message: String
        public let line: Int
        public let column: Int
        public var description: String { "JSON error at line \(line), column \(column): \(message)" }
    }

    public static func parse(_ text: String) throws -> JinjaValue {
        var p = Parser(bytes: Array(text.utf8))
        p.skipSpace()
        let v = try p.value(depth: 0)
        p.skipSpace()
        if p.pos != p.bytes.count { throw p.error("unexpected trailing characters") }
        return v
    }

    public static func parse(contentsOf url: URL) throws -> JinjaValue {
        let data = try Data(contentsOf: url)
        return try parse(String(decoding: data, as: UTF8.self))
    }

    private struct Parser {
        let bytes: [UInt8]
        var pos = 0

        func error(_ message: String) -> ParseError {
            var line = 1, col = 1
            for b in bytes[0..<min(pos, bytes.count)] {
                if b == 10 { line += 1; col = 1 } else { col += 1 }
            }
            return ParseError(message: message, line: line, column: col)
        }

        mutating func skipSpace() {
            while pos < bytes.count, [32, 9, 10, 13].contains(bytes[pos]) { pos += 1 }
        }

        mutating func expect(_ word: String) throws {
            let w = Array(word.utf8)
            guard pos + w.count <= bytes.count, Array(bytes[pos..<pos + w.count]) == w else {
                throw error("expected '\(word)'")
            }
            pos += w.count
        }

        mutating func value(depth: Int) throws -> JinjaValue {
            guard depth < 512 else { throw error("nesting too deep") }
            guard pos < bytes.count else { throw error("unexpected end of input") }
            switch bytes[pos] {
            case UInt8(ascii: "{"):
                pos += 1
                var obj = JinjaObject()
                skipSpace()
                if pos < bytes.count, bytes[pos] == UInt8(ascii: "}") { pos += 1; return .object(obj) }
                while true {
                    skipSpace()
                    guard pos < bytes.count, bytes[pos] == UInt8(ascii: "\"") else { throw error("expected a string key") }
                    let key = try string()
                    skipSpace()
                    try expect(":")
                    skipSpace()
                    obj[key] = try value(depth: depth + 1)
                    skipSpace()
                    guard pos < bytes.count else { throw error("unterminated object") }
                    if bytes[pos] == UInt8(ascii: ",") { pos += 1; continue }
                    if bytes[pos] == UInt8(ascii: "}") { pos += 1; return .object(obj) }
                    throw error("expected ',' or '}'")
                }
            case UInt8(ascii: "["):
                pos += 1
                var arr: [JinjaValue] = []
                skipSpace()
                if pos < bytes.count, bytes[pos] == UInt8(ascii: "]") { pos += 1; return .array(arr) }
                while true {
                    skipSpace()
                    arr.append(try value(depth: depth + 1))
                    skipSpace()
                    guard pos < bytes.count else { throw error("unterminated array") }
                    if bytes[pos] == UInt8(ascii: ",") { pos += 1; continue }
                    if bytes[pos] == UInt8(ascii: "]") { pos += 1; return .array(arr) }
                    throw error("expected ',' or ']'")
                }
            case UInt8(ascii: "\""):
                return .string(try string())
            case UInt8(ascii: "t"): try expect("true"); return .bool(true)
            case UInt8(ascii: "f"): try expect("false"); return .bool(false)
            case UInt8(ascii: "n"): try expect("null"); return .null
            default:
                return try number()
            }
        }

        mutating func number() throws -> JinjaValue {
            let start = pos
            var isFloat = false
            while pos < bytes.count {
                let b = bytes[pos]
                if (b >= 48 && b <= 57) || b == UInt8(ascii: "-") || b == UInt8(ascii: "+") {
                    pos += 1
                } else if b == UInt8(ascii: ".") || b == UInt8(ascii: "e") || b == UInt8(ascii: "E") {
                    isFloat = true; pos += 1
                } else { break }
            }
            let text = String(decoding: bytes[start..<pos], as: UTF8.self)
            if !isFloat, let i = Int(text) { return .int(i) }
            if let d = Double(text), !text.isEmpty { return .double(d) }
            pos = start
            throw error("invalid value")
        }

        mutating func hex4() throws -> UInt32 {
            guard pos + 4 <= bytes.count,
                  let v = UInt32(String(decoding: bytes[pos..<pos + 4], as: UTF8.self), radix: 16)
            else { throw error("invalid \\u escape") }
            pos += 4
            return v
        }

        mutating func string() throws -> String {
            pos += 1  // opening quote
            var out = [UInt8]()
            while true {
                guard pos < bytes.count else { throw error("unterminated string") }
                let b = bytes[pos]
                pos += 1
                if b == UInt8(ascii: "\"") { break }
                if b != UInt8(ascii: "\\") { out.append(b); continue }
                guard pos < bytes.count else { throw error("unterminated escape") }
                let e = bytes[pos]
                pos += 1
                switch e {
                case UInt8(ascii: "n"): out.append(10)
                case UInt8(ascii: "t"): out.append(9)
                case UInt8(ascii: "r"): out.append(13)
                case UInt8(ascii: "b"): out.append(8)
                case UInt8(ascii: "f"): out.append(12)
                case UInt8(ascii: "/"), UInt8(ascii: "\\"), UInt8(ascii: "\""): out.append(e)
                case UInt8(ascii: "u"):
                    var code = try hex4()
                    if code >= 0xD800 && code < 0xDC00, pos + 1 < bytes.count,
                       bytes[pos] == UInt8(ascii: "\\"), bytes[pos + 1] == UInt8(ascii: "u") {
                        pos += 2
                        let low = try hex4()
                        code = 0x10000 + ((code - 0xD800) << 10) + (low &- 0xDC00)
                    }
                    let scalar = Unicode.Scalar(code) ?? "\u{FFFD}"
                    out.append(contentsOf: Array(String(Character(scalar)).utf8))
                default: throw error("invalid escape")
                }
            }
            return String(decoding: out, as: UTF8.self)
        }
    }
}
