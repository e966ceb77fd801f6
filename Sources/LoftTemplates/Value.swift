import Foundation

/// Insertion-ordered dictionary with string keys, as Python dicts behave.
struct OrderedDict {
    private(set) var keys: [String] = []
    private var storage: [String: Value] = [:]

    init() {}
    init(_ pairs: [(String, Value)]) { for (k, v) in pairs { self[k] = v } }

    subscript(key: String) -> Value? {
        get { storage[key] }
        set {
            if let newValue {
                if storage.updateValue(newValue, forKey: key) == nil { keys.append(key) }
            } else if storage.removeValue(forKey: key) != nil {
                keys.removeAll { $0 == key }
            }
        }
    }

    var values: [Value] { keys.map { storage[$0] ?? Value.none } }
    var pairs: [(String, Value)] { keys.map { ($0, storage[$0] ?? Value.none) } }
    var count: Int { keys.count }
}

/// A mutable attribute bag from `namespace(...)`, shared by reference as in jinja2.
final class Namespace {
    var attributes: OrderedDict
    init(_ attributes: OrderedDict) { self.attributes = attributes }
}

/// Positional and keyword arguments of a call, already evaluated.
struct CallArguments {
    var positional: [Value] = []
    var keyword: [(String, Value)] = []
    /// The `{% call %}` body, passed to a macro as `caller`.
    var caller: Value?

    func named(_ name: String) -> Value? { keyword.first { $0.0 == name }?.1 }

    /// Argument by position or keyword, as Python binds parameters.
    func argument(_ index: Int, _ name: String) -> Value? {
        if index < positional.count { return positional[index] }
        return named(name)
    }
}

/// A callable value: a builtin global, a bound method, or a macro.
struct Function {
    let name: String
    let body: (CallArguments) throws -> Value
}

/// A runtime value inside the interpreter: JSON values plus jinja2's Undefined,
/// namespaces and callables. Semantics (truthiness, str(), ==) follow Python.
enum Value {
    /// A missing variable, attribute or item; `hint` says what was missing, for errors.
    case undefined(hint: String)
    case none
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case list([Value])
    /// A Python tuple: like a list, but printed with parentheses and never equal to a list.
    case tuple([Value])
    case dict(OrderedDict)
    case namespace(Namespace)
    case function(Function)

    init(_ json: JinjaValue) {
        switch json {
        case .null: self = .none
        case .bool(let b): self = .bool(b)
        case .int(let i): self = .int(i)
        case .double(let d): self = .double(d)
        case .string(let s): self = .string(s)
        case .array(let a): self = .list(a.map(Value.init))
        case .object(let o): self = .dict(OrderedDict(o.pairs.map { ($0.0, Value($0.1)) }))
        }
    }

    var sequenceItems: [Value]? {
        switch self {
        case .list(let l), .tuple(let l): return l
        default: return nil
        }
    }

    var isUndefined: Bool { if case .undefined = self { return true }; return false }
    var isNone: Bool { if case .none = self { return true }; return false }

    var typeName: String {
        switch self {
        case .undefined: return "Undefined"
        case .none: return "NoneType"
        case .bool: return "bool"
        case .int: return "int"
        case .double: return "float"
        case .string: return "str"
        case .list: return "list"
        case .tuple: return "tuple"
        case .dict: return "dict"
        case .namespace: return "Namespace"
        case .function: return "function"
        }
    }

    /// Python truthiness.
    var truthy: Bool {
        switch self {
        case .undefined, .none: return false
        case .bool(let b): return b
        case .int(let i): return i != 0
        case .double(let d): return d != 0
        case .string(let s): return !s.isEmpty
        case .list(let l), .tuple(let l): return !l.isEmpty
        case .dict(let d): return d.count > 0
        case .namespace, .function: return true
        }
    }

    /// Python `str()` as jinja2 prints values (Undefined prints nothing).
    var pythonString: String {
        switch self {
        case .undefined: return ""
        case .string(let s): return s
        default: return pythonRepr
        }
    }

    /// Python `repr()`, used when containers are printed.
    var pythonRepr: String {
        switch self {
        case .undefined: return ""
        case .none: return "None"
        case .bool(let b): return b ? "True" : "False"
        case .int(let i): return String(i)
        case .double(let d): return Value.pythonFloat(d)
        case .string(let s): return Value.pythonStringRepr(s)
        case .list(let l): return "[" + l.map(\.pythonRepr).joined(separator: ", ") + "]"
        case .tuple(let l):
            return "(" + l.map(\.pythonRepr).joined(separator: ", ") + (l.count == 1 ? ",)" : ")")
        case .dict(let d):
            return "{" + d.pairs.map { Value.pythonStringRepr($0.0) + ": " + $0.1.pythonRepr }.joined(separator: ", ") + "}"
        case .namespace(let n):
            return "<Namespace " + Value.dict(n.attributes).pythonRepr + ">"
        case .function(let f): return "<function \(f.name)>"
        }
    }

    /// Python's float repr; Swift's shortest round-trip form matches it
    /// (including "1e-05" and "1e+16"), except for the special values.
    static func pythonFloat(_ d: Double) -> String {
        if d.isNaN { return "nan" }
        if d.isInfinite { return d < 0 ? "-inf" : "inf" }
        return "\(d)"
    }

    static func pythonStringRepr(_ s: String) -> String {
        // Scalar checks: "'" followed by a combining mark is one Swift Character.
        let hasSingle = s.unicodeScalars.contains("'"), hasDouble = s.unicodeScalars.contains("\"")
        let quote: Character = (hasSingle && !hasDouble) ? "\"" : "'"
        var out = String(quote)
        for u in s.unicodeScalars {
            switch u {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if Character(u) == quote {
                    out += "\\" + String(quote)
                } else if !PyString.isPrintable(u) {
                    if u.value < 0x100 {
                        out += String(format: "\\x%02x", u.value)
                    } else if u.value < 0x10000 {
                        out += String(format: "\\u%04x", u.value)
                    } else {
                        out += String(format: "\\U%08x", u.value)
                    }
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        out.append(quote)
        return out
    }

    /// Python `==`, including int/float/bool cross-equality.
    static func equal(_ a: Value, _ b: Value) -> Bool {
        switch (a, b) {
        case (.undefined, .undefined), (.none, .none): return true
        case (.string(let x), .string(let y)): return x.unicodeScalars.elementsEqual(y.unicodeScalars)
        case (.list(let x), .list(let y)), (.tuple(let x), .tuple(let y)):
            return x.count == y.count && zip(x, y).allSatisfy { equal($0, $1) }
        case (.dict(let x), .dict(let y)):
            return x.count == y.count && x.pairs.allSatisfy { k, v in y[k].map { equal(v, $0) } ?? false }
        case (.namespace(let x), .namespace(let y)): return x === y
        default:
            if let x = a.numeric, let y = b.numeric {
                if case .int(let i) = x, case .int(let j) = y { return i == j }
                return x.asDouble == y.asDouble
            }
            return false
        }
    }

    /// Numbers (bool counts as int, as in Python) normalised to int or double.
    var numeric: Value? {
        switch self {
        case .bool(let b): return .int(b ? 1 : 0)
        case .int, .double: return self
        default: return nil
        }
    }

    var asDouble: Double {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        case .bool(let b): return b ? 1 : 0
        default: return .nan
        }
    }

    /// Python ordering for `<`, `sort` etc.; nil when the types do not compare.
    static func compare(_ a: Value, _ b: Value) -> Int? {
        switch (a, b) {
        case (.string(let x), .string(let y)):
            let xs = Array(x.unicodeScalars), ys = Array(y.unicodeScalars)
            for (p, q) in zip(xs, ys) where p != q { return p.value < q.value ? -1 : 1 }
            return xs.count == ys.count ? 0 : (xs.count < ys.count ? -1 : 1)
        case (.list(let x), .list(let y)), (.tuple(let x), .tuple(let y)):
            for (p, q) in zip(x, y) {
                guard let c = compare(p, q) else { return nil }
                if c != 0 { return c }
            }
            return x.count == y.count ? 0 : (x.count < y.count ? -1 : 1)
        default:
            guard let x = a.numeric, let y = b.numeric else { return nil }
            if case .int(let i) = x, case .int(let j) = y { return i == j ? 0 : (i < j ? -1 : 1) }
            let p = x.asDouble, q = y.asDouble
            return p == q ? 0 : (p < q ? -1 : 1)
        }
    }

    /// Back to a plain JSON value (for callers and the CLI); undefined becomes null.
    var json: JinjaValue {
        switch self {
        case .undefined, .none, .function: return .null
        case .bool(let b): return .bool(b)
        case .int(let i): return .int(i)
        case .double(let d): return .double(d)
        case .string(let s): return .string(s)
        case .list(let l), .tuple(let l): return .array(l.map(\.json))
        case .dict(let d): return .object(JinjaObject(d.pairs.map { ($0.0, $0.1.json) }))
        case .namespace(let n): return Value.dict(n.attributes).json
        }
    }
}
