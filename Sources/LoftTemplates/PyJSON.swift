import Foundation

/// Python's `json.dumps` as transformers' `tojson` filter calls it
/// (`ensure_ascii=False`, `sort_keys=False` by default, optional indent/separators).
struct PyJSON {
    var indent: String?
    var itemSeparator: String
    var keySeparator: String
    var ensureASCII: Bool
    var sortKeys: Bool

    init(indent: String? = nil, separators: (String, String)? = nil, ensureASCII: Bool = false, sortKeys: Bool = false) {
        self.indent = indent
        self.itemSeparator = separators?.0 ?? (indent == nil ? ", " : ",")
        self.keySeparator = separators?.1 ?? ": "
        self.ensureASCII = ensureASCII
        self.sortKeys = sortKeys
    }

    func encode(_ v: Value) throws -> String {
        var out = ""
        try encode(v, level: 0, into: &out)
        return out
    }

    private func newline(_ level: Int, _ out: inout String) {
        guard let indent else { return }
        out += "\n" + String(repeating: indent, count: level)
    }

    private func encode(_ v: Value, level: Int, into out: inout String) throws {
        guard level < 256 else { throw EvalError(message: "tojson: value nested too deeply") }
        switch v {
        case .none: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .double(let d):
            if d.isNaN { out += "NaN" } else if d.isInfinite { out += d < 0 ? "-Infinity" : "Infinity" } else { out += Value.pythonFloat(d) }
        case .string(let s): out += quote(s)
        case .list(let items), .tuple(let items):
            if items.isEmpty { out += "[]"; return }
            out += "["
            for (i, item) in items.enumerated() {
                if i > 0 { out += itemSeparator }
                newline(level + 1, &out)
                try encode(item, level: level + 1, into: &out)
            }
            newline(level, &out)
            out += "]"
        case .dict(let d):
            try encodeObject(d, level: level, into: &out)
        case .namespace(let ns):
            try encodeObject(ns.attributes, level: level, into: &out)
        case .undefined:
            throw EvalError(message: "Object of type Undefined is not JSON serializable")
        case .function:
            throw EvalError(message: "Object of type function is not JSON serializable")
        }
    }

    private func encodeObject(_ d: OrderedDict, level: Int, into out: inout String) throws {
        if d.count == 0 { out += "{}"; return }
        var pairs = d.pairs
        if sortKeys {
            pairs.sort { (Value.compare(.string($0.0), .string($1.0)) ?? 0) < 0 }
        }
        out += "{"
        for (i, (k, v)) in pairs.enumerated() {
            if i > 0 { out += itemSeparator }
            newline(level + 1, &out)
            out += quote(k) + keySeparator
            try encode(v, level: level + 1, into: &out)
        }
        newline(level, &out)
        out += "}"
    }

    func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if u.value < 0x20 {
                    out += String(format: "\\u%04x", u.value)
                } else if ensureASCII && u.value > 0x7E {
                    if u.value > 0xFFFF {
                        let v = u.value - 0x10000
                        out += String(format: "\\u%04x\\u%04x", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF))
                    } else {
                        out += String(format: "\\u%04x", u.value)
                    }
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }
}
