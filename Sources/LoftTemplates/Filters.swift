import Foundation

/// jinja2's builtin filters that chat templates use, plus transformers' `tojson`.
extension Interpreter {
    func applyFilter(_ name: String, to value: Value, arguments args: CallArguments) throws -> Value {
        func arg(_ i: Int, _ n: String) -> Value? { args.argument(i, n) }
        func boolArg(_ i: Int, _ n: String, _ d: Bool) -> Bool { arg(i, n)?.truthy ?? d }
        func requireDefined() throws { if value.isUndefined { throw undefinedError(value) } }

        switch name {
        case "default", "d":
            let fallback = arg(0, "default_value") ?? .string("")
            if value.isUndefined || (boolArg(1, "boolean", false) && !value.truthy) { return fallback }
            return value
        case "safe":
            return value
        case "string":
            return .string(value.pythonString)
        case "escape", "e":
            var out = ""
            for c in value.pythonString.unicodeScalars {
                switch c {
                case "&": out += "&amp;"
                case "<": out += "&lt;"
                case ">": out += "&gt;"
                case "\"": out += "&#34;"
                case "'": out += "&#39;"
                default: out.unicodeScalars.append(c)
                }
            }
            return .string(out)
        case "trim":
            return .string(PyString.strip(value.pythonString, arg(0, "chars").flatMap(Self.optionalString), leading: true, trailing: true))
        case "upper": return .string(PyString.upper(value.pythonString))
        case "lower": return .string(PyString.lower(value.pythonString))
        case "capitalize": return .string(PyString.capitalize(value.pythonString))
        case "title":
            // jinja2 splits on runs of "-", whitespace or opening brackets and writes each
            // piece as piece[0].upper() + piece[1:].lower().
            var out = ""
            var piece: [Unicode.Scalar] = []
            func flush() {
                guard let first = piece.first else { return }
                out += PyString.upper(String(Character(first))) + PyString.lower(PyString.make(piece.dropFirst()))
                piece = []
            }
            for c in value.pythonString.unicodeScalars {
                if c == "-" || c == "(" || c == "{" || c == "[" || c == "<" || PyString.isSpace(c) {
                    flush()
                    out.unicodeScalars.append(c)
                } else {
                    piece.append(c)
                }
            }
            flush()
            return .string(out)
        case "replace":
            guard let old = arg(0, "old"), let new = arg(1, "new") else { throw EvalError(message: "replace needs two arguments") }
            var count = -1
            if case .int(let c)? = arg(2, "count")?.numeric { count = c }
            return .string(PyString.replace(value.pythonString, old.pythonString, new.pythonString, count: count))
        case "length", "count":
            return .int(try length(of: value))
        case "first":
            return try iterate(value).first ?? .undefined(hint: "No first item, sequence was empty.")
        case "last":
            return try iterate(value).last ?? .undefined(hint: "No last item, sequence was empty.")
        case "list":
            return .list(try iterate(value))
        case "reverse":
            if case .string(let s) = value { return .string(PyString.make(PyString.scalars(s).reversed())) }
            return .list(try iterate(value).reversed())
        case "join":
            let separator = arg(0, "d")?.pythonString ?? ""
            var items = try iterate(value)
            if let attribute = arg(1, "attribute") { items = try items.map { try lookupPath($0, attribute) } }
            return .string(items.map(\.pythonString).joined(separator: separator))
        case "items":
            if value.isUndefined { return .list([]) }
            guard case .dict(let d) = value else { throw EvalError(message: "Can only get item pairs from a mapping.") }
            return .list(d.pairs.map { .tuple([.string($0.0), $0.1]) })
        case "dictsort":
            guard case .dict(let d) = value else { throw EvalError(message: "dictsort needs a mapping") }
            let byValue = arg(1, "by")?.pythonString == "value"
            var pairs = d.pairs
            pairs.sort { a, b in
                let x = byValue ? a.1 : .string(a.0), y = byValue ? b.1 : .string(b.0)
                return (Value.compare(Self.foldCase(x), Self.foldCase(y)) ?? 0) < 0
            }
            if boolArg(2, "reverse", false) { pairs.reverse() }
            return .list(pairs.map { .tuple([.string($0.0), $0.1]) })
        case "tojson":
            try requireDefined()
            var indent: String?
            switch arg(1, "indent") {
            case .int(let n)?: indent = String(repeating: " ", count: max(0, n))
            case .string(let s)?: indent = s
            default: indent = nil
            }
            var separators: (String, String)?
            if let l = arg(2, "separators").flatMap({ v -> [Value]? in if case .list(let l) = v { return l }; if case .tuple(let l) = v { return l }; return nil }), l.count == 2 { separators = (l[0].pythonString, l[1].pythonString) }
            let encoder = PyJSON(indent: indent, separators: separators,
                                 ensureASCII: boolArg(0, "ensure_ascii", false), sortKeys: boolArg(3, "sort_keys", false))
            return .string(try encoder.encode(value))
        case "int":
            try requireDefined()
            let fallback = arg(0, "default") ?? .int(0)
            switch value {
            case .int, .bool: return value.numeric ?? fallback
            case .double(let d): return Int(exactly: d.rounded(.towardZero)).map { .int($0) } ?? fallback
            case .string(let s):
                let t = PyString.strip(s, nil, leading: true, trailing: true).replacingOccurrences(of: "_", with: "")
                if let i = Int(t) { return .int(i) }
                if let d = Double(t), let i = Int(exactly: d.rounded(.towardZero)) { return .int(i) }
                return fallback
            default: return fallback
            }
        case "float":
            try requireDefined()
            let fallback = arg(0, "default") ?? .double(0)
            switch value {
            case .int, .bool, .double: return .double(value.asDouble)
            case .string(let s):
                return Double(PyString.strip(s, nil, leading: true, trailing: true)).map { .double($0) } ?? fallback
            default: return fallback
            }
        case "abs":
            switch value.numeric {
            case .int(let i)?: return .int(i < 0 ? 0 &- i : i)
            case .double(let d)?: return .double(abs(d))
            default: throw EvalError(message: "bad operand type for abs(): '\(value.typeName)'")
            }
        case "round":
            guard let number = value.numeric else {
                if value.isUndefined { throw undefinedError(value) }
                throw EvalError(message: "type \(value.typeName) doesn't define __round__ method")
            }
            let precision: Int
            if case .int(let p)? = arg(0, "precision")?.numeric { precision = p } else { precision = 0 }
            let method = arg(1, "method")?.pythonString ?? "common"
            let scale = pow(10.0, Double(precision))
            let x = value.asDouble * scale
            let rounded: Double
            switch method {
            case "ceil": rounded = x.rounded(.up)
            case "floor": rounded = x.rounded(.down)
            default: rounded = x.rounded(.toNearestOrEven)
            }
            if case .int = number, method == "common" { return number }
            if method == "common", precision >= 0, precision <= 30, value.asDouble.isFinite {
                // Python's round() is correctly rounded on the exact binary value, as printf is.
                return .double(Double(String(format: "%.\(precision)f", value.asDouble)) ?? rounded / scale)
            }
            return .double(rounded / scale)
        case "unique":
            let caseSensitive = boolArg(0, "case_sensitive", false)
            var seen: [Value] = []
            var out: [Value] = []
            for item in try iterate(value) {
                var key = item
                if let attribute = arg(1, "attribute") { key = try lookupPath(item, attribute) }
                if !caseSensitive { key = Self.foldCase(key) }
                if !seen.contains(where: { Value.equal($0, key) }) { seen.append(key); out.append(item) }
            }
            return .list(out)
        case "sort":
            let reverse = boolArg(0, "reverse", false)
            let caseSensitive = boolArg(1, "case_sensitive", false)
            let attribute = arg(2, "attribute")
            let items = try iterate(value)
            let keys = try items.map { item -> Value in
                let k = try attribute.map { try lookupPath(item, $0) } ?? item
                return caseSensitive ? k : Self.foldCase(k)
            }
            var failure: EvalError?
            let order = Array(items.indices).sorted { a, b in
                guard let c = Value.compare(keys[a], keys[b]) else {
                    failure = EvalError(message: "'<' not supported between instances of '\(keys[a].typeName)' and '\(keys[b].typeName)'")
                    return false
                }
                return reverse ? c > 0 : c < 0
            }
            if let failure { throw failure }
            return .list(order.map { items[$0] })
        case "min", "max":
            let caseSensitive = boolArg(0, "case_sensitive", false)
            let attribute = arg(1, "attribute")
            let items = try iterate(value)
            guard !items.isEmpty else { return .undefined(hint: "No aggregated item, sequence was empty.") }
            var best = 0
            for i in 1..<items.count {
                var a = try attribute.map { try lookupPath(items[i], $0) } ?? items[i]
                var b = try attribute.map { try lookupPath(items[best], $0) } ?? items[best]
                if !caseSensitive { a = Self.foldCase(a); b = Self.foldCase(b) }
                guard let c = Value.compare(a, b) else { throw EvalError(message: "values are not comparable") }
                if name == "min" ? c < 0 : c > 0 { best = i }
            }
            return items[best]
        case "sum":
            var total: Value = arg(1, "start") ?? .int(0)
            for item in try iterate(value) {
                let v = try arg(0, "attribute").map { try lookupPath(item, $0) } ?? item
                guard let x = total.numeric, let y = v.numeric else { throw EvalError(message: "sum needs numbers") }
                if case .int(let i) = x, case .int(let j) = y { total = .int(i + j) } else { total = .double(x.asDouble + y.asDouble) }
            }
            return total
        case "map":
            let items = try iterate(value)
            if let attribute = args.named("attribute") {
                let fallback = args.named("default")
                return .list(try items.map { item in
                    let v = try lookupPath(item, attribute)
                    if v.isUndefined, let fallback { return fallback }
                    return v
                })
            }
            guard let filterName = args.positional.first?.pythonString else { return .list(items) }
            let rest = CallArguments(positional: Array(args.positional.dropFirst()), keyword: args.keyword)
            return .list(try items.map { try applyFilter(filterName, to: $0, arguments: rest) })
        case "select", "reject":
            let keep = name == "select"
            let items = try iterate(value)
            let testName = args.positional.first?.pythonString
            let rest = CallArguments(positional: Array(args.positional.dropFirst()), keyword: args.keyword)
            return .list(try items.filter { item in
                let passes = try testName.map { try applyTest($0, to: item, arguments: rest) } ?? item.truthy
                return passes == keep
            })
        case "selectattr", "rejectattr":
            let keep = name == "selectattr"
            guard let attribute = args.positional.first else { throw EvalError(message: "\(name) needs an attribute name") }
            let testName = args.positional.count > 1 ? args.positional[1].pythonString : nil
            let rest = CallArguments(positional: Array(args.positional.dropFirst(2)), keyword: args.keyword)
            return .list(try iterate(value).filter { item in
                let v = try lookupPath(item, attribute)
                let passes = try testName.map { try applyTest($0, to: v, arguments: rest) } ?? v.truthy
                return passes == keep
            })
        case "attr":
            guard let n = arg(0, "name") else { throw EvalError(message: "attr needs a name") }
            return try attribute(of: value, n.pythonString)
        case "indent":
            var indentation = "    "
            switch arg(0, "width") {
            case .string(let s)?: indentation = s
            case let v?: if case .int(let n)? = v.numeric { indentation = String(repeating: " ", count: max(0, n)) }
            case nil: break
            }
            let lines = Self.splitLines(value.pythonString + "\n")
            var result: String
            if boolArg(2, "blank", false) {
                result = lines.joined(separator: "\n" + indentation)
            } else {
                result = lines.first ?? ""
                let rest = lines.dropFirst()
                if !rest.isEmpty {
                    result += "\n" + rest.map { $0.isEmpty ? $0 : indentation + $0 }.joined(separator: "\n")
                }
            }
            if boolArg(1, "first", false) { result = indentation + result }
            return .string(result)
        case "wordcount":
            // jinja2 counts matches of the regex \w+.
            var count = 0, inWord = false
            for c in value.pythonString.unicodeScalars {
                let w = PyString.isWord(c)
                if w && !inWord { count += 1 }
                inWord = w
            }
            return .int(count)
        case "center":
            let width: Int
            if case .int(let w)? = arg(0, "width")?.numeric { width = w } else { width = 80 }
            let s = value.pythonString
            let n = PyString.length(s)
            guard width > n else { return .string(s) }
            let total = width - n
            let left = total / 2 + (total & width & 1)
            return .string(String(repeating: " ", count: left) + s + String(repeating: " ", count: total - left))
        case "batch", "slice", "format", "truncate", "wordwrap", "urlencode", "xmlattr", "striptags", "pprint", "filesizeformat", "forceescape", "urlize", "groupby":
            throw EvalError(message: "filter '\(name)' is not supported by Loft's template engine")
        default:
            throw EvalError(message: "No filter named '\(name)'.")
        }
    }

    static func optionalString(_ v: Value) -> String? {
        if v.isNone || v.isUndefined { return nil }
        return v.pythonString
    }

    /// jinja2 compares strings case-insensitively in sort/unique/min/max by default.
    static func foldCase(_ v: Value) -> Value {
        if case .string(let s) = v { return .string(PyString.lower(s)) }
        return v
    }

    /// Python's str.splitlines().
    static func splitLines(_ s: String) -> [String] {
        var lines: [String] = []
        var current = String.UnicodeScalarView()
        let scalars = Array(s.unicodeScalars)
        var i = 0
        while i < scalars.count {
            let c = scalars[i]
            switch c.value {
            case 0x0A, 0x0B, 0x0C, 0x1C, 0x1D, 0x1E, 0x85, 0x2028, 0x2029:
                lines.append(String(current)); current = String.UnicodeScalarView()
            case 0x0D:
                lines.append(String(current)); current = String.UnicodeScalarView()
                if i + 1 < scalars.count && scalars[i + 1] == "\n" { i += 1 }
            default:
                current.append(c)
            }
            i += 1
        }
        if !current.isEmpty { lines.append(String(current)) }
        return lines
    }

    func length(of value: Value) throws -> Int {
        switch value {
        case .string(let s): return PyString.length(s)
        case .list(let l), .tuple(let l): return l.count
        case .dict(let d): return d.count
        case .undefined: return 0
        case .namespace(let ns): return ns.attributes.count
        default: throw EvalError(message: "object of type '\(value.typeName)' has no len()")
        }
    }

    /// `attribute="a.b"` lookups in map/selectattr/sort: items, dotted, integers allowed.
    func lookupPath(_ item: Value, _ path: Value) throws -> Value {
        if case .int = path { return try self.item(of: item, path) }
        var v = item
        for part in path.pythonString.split(separator: ".", omittingEmptySubsequences: false) {
            if v.isUndefined { return v }
            if let i = Int(part) { v = try self.item(of: v, .int(i)) } else { v = try self.item(of: v, .string(String(part))) }
        }
        return v
    }
}
