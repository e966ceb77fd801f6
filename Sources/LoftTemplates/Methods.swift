import Foundation

/// Python methods templates call on values (`s.strip()`, `d.items()`, ...).
/// Mutating methods are refused, as in transformers' ImmutableSandboxedEnvironment.
extension Interpreter {
    func boundMethod(_ object: Value, _ name: String) -> Value? {
        let body: ((CallArguments) throws -> Value)?
        switch object {
        case .string(let s): body = stringMethod(s, name)
        case .dict(let d): body = dictMethod(d, name)
        case .list(let l), .tuple(let l): body = listMethod(l, name)
        default: body = nil
        }
        guard let body else { return nil }
        return .function(Function(name: name, body: body))
    }

    private func stringMethod(_ s: String, _ name: String) -> ((CallArguments) throws -> Value)? {
        func optionalString(_ a: CallArguments, _ i: Int, _ n: String) -> String? {
            a.argument(i, n).flatMap(Interpreter.optionalString)
        }
        switch name {
        case "strip": return { .string(PyString.strip(s, optionalString($0, 0, "chars"), leading: true, trailing: true)) }
        case "lstrip": return { .string(PyString.strip(s, optionalString($0, 0, "chars"), leading: true, trailing: false)) }
        case "rstrip": return { .string(PyString.strip(s, optionalString($0, 0, "chars"), leading: false, trailing: true)) }
        case "split", "rsplit":
            return { a in
                var maxsplit = -1
                if case .int(let m)? = a.argument(1, "maxsplit")?.numeric { maxsplit = m }
                let sep = optionalString(a, 0, "sep")
                if sep == "" { throw EvalError(message: "empty separator") }
                if name == "rsplit" && maxsplit >= 0, let sep {
                    // Split from the right: reverse, split, reverse back.
                    let r = { (x: String) in PyString.make(PyString.scalars(x).reversed()) }
                    return .list(PyString.split(r(s), r(sep), maxsplit: maxsplit).reversed().map { .string(r($0)) })
                }
                return .list(PyString.split(s, sep, maxsplit: maxsplit).map { .string($0) })
            }
        case "splitlines": return { _ in .list(Interpreter.splitLines(s).map { .string($0) }) }
        case "startswith", "endswith":
            return { a in
                guard let p = a.argument(0, "prefix") else { throw EvalError(message: "\(name) needs an argument") }
                let candidates: [Value]
                if case .list(let l) = p { candidates = l } else if case .tuple(let l) = p { candidates = l } else { candidates = [p] }
                let hay = PyString.scalars(s)
                for c in candidates {
                    guard case .string(let x) = c else { throw EvalError(message: "\(name) first arg must be str or a tuple of str") }
                    let n = PyString.scalars(x)
                    if name == "startswith" ? hay.starts(with: n) : hay.reversed().starts(with: n.reversed()) { return .bool(true) }
                }
                return .bool(false)
            }
        case "upper": return { _ in .string(PyString.upper(s)) }
        case "lower": return { _ in .string(PyString.lower(s)) }
        case "title": return { _ in .string(PyString.title(s)) }
        case "capitalize": return { _ in .string(PyString.capitalize(s)) }
        case "replace":
            return { a in
                guard let old = a.argument(0, "old"), let new = a.argument(1, "new") else { throw EvalError(message: "replace needs two arguments") }
                var count = -1
                if case .int(let c)? = a.argument(2, "count")?.numeric { count = c }
                return .string(PyString.replace(s, old.pythonString, new.pythonString, count: count))
            }
        case "find", "index", "rfind", "rindex":
            return { a in
                guard let sub = a.argument(0, "sub") else { throw EvalError(message: "\(name) needs an argument") }
                let h = PyString.scalars(s), n = PyString.scalars(sub.pythonString)
                let r = name.hasPrefix("r") ? PyString.rfind(h, n) : PyString.find(h, n)
                if r == nil && name.hasSuffix("index") { throw EvalError(message: "substring not found") }
                return .int(r ?? -1)
            }
        case "count":
            return { a in
                guard let sub = a.argument(0, "sub") else { throw EvalError(message: "count needs an argument") }
                let n = PyString.scalars(sub.pythonString)
                let h = PyString.scalars(s)
                if n.isEmpty { return .int(h.count + 1) }
                var count = 0, i = 0
                while let j = PyString.find(h, n, from: i) { count += 1; i = j + n.count }
                return .int(count)
            }
        case "join":
            return { [unowned self] a in
                guard let items = a.argument(0, "iterable") else { throw EvalError(message: "join needs an argument") }
                return .string(try self.iterate(items).map(\.pythonString).joined(separator: s))
            }
        case "isdigit": return { _ in .bool(!s.isEmpty && s.unicodeScalars.allSatisfy { $0.properties.numericType == .decimal || $0.properties.numericType == .digit }) }
        case "isalpha": return { _ in .bool(!s.isEmpty && s.unicodeScalars.allSatisfy(PyString.isAlpha)) }
        case "isspace": return { _ in .bool(!s.isEmpty && s.unicodeScalars.allSatisfy(PyString.isSpace)) }
        case "islower": return { _ in .bool(PyString.isLower(s)) }
        case "isupper": return { _ in .bool(PyString.isUpper(s)) }
        case "format":
            return { a in .string(try Interpreter.pythonFormat(s, a)) }
        default: return nil
        }
    }

    private func dictMethod(_ d: OrderedDict, _ name: String) -> ((CallArguments) throws -> Value)? {
        switch name {
        case "items": return { _ in .list(d.pairs.map { .tuple([.string($0.0), $0.1]) }) }
        case "keys": return { _ in .list(d.keys.map { .string($0) }) }
        case "values": return { _ in .list(d.values) }
        case "get":
            return { a in
                guard let key = a.argument(0, "key") else { throw EvalError(message: "get expected at least 1 argument") }
                guard case .string(let k) = key else { return a.argument(1, "default") ?? Value.none }
                return d[k] ?? a.argument(1, "default") ?? Value.none
            }
        case "copy": return { _ in .dict(d) }
        case "pop", "popitem", "update", "setdefault", "clear":
            return { _ in throw EvalError(message: "access to attribute '\(name)' of 'dict' object is unsafe.") }
        default: return nil
        }
    }

    private func listMethod(_ l: [Value], _ name: String) -> ((CallArguments) throws -> Value)? {
        switch name {
        case "index":
            return { a in
                guard let x = a.positional.first else { throw EvalError(message: "index expected 1 argument") }
                guard let i = l.firstIndex(where: { Value.equal($0, x) }) else { throw EvalError(message: "\(x.pythonRepr) is not in list") }
                return .int(i)
            }
        case "count":
            return { a in
                guard let x = a.positional.first else { throw EvalError(message: "count expected 1 argument") }
                return .int(l.filter { Value.equal($0, x) }.count)
            }
        case "copy": return { _ in .list(l) }
        case "append", "extend", "insert", "pop", "remove", "clear", "sort", "reverse":
            return { _ in throw EvalError(message: "access to attribute '\(name)' of 'list' object is unsafe.") }
        default: return nil
        }
    }

    /// A subset of Python's str.format: `{}`, `{0}`, `{name}`, `{{`/`}}`.
    static func pythonFormat(_ template: String, _ args: CallArguments) throws -> String {
        var out = ""
        var auto = 0
        let a = Array(template.unicodeScalars)
        var i = 0
        while i < a.count {
            let c = a[i]
            if c == "{" && i + 1 < a.count && a[i + 1] == "{" { out += "{"; i += 2; continue }
            if c == "}" && i + 1 < a.count && a[i + 1] == "}" { out += "}"; i += 2; continue }
            if c == "{" {
                guard let close = a[i...].firstIndex(of: "}") else { throw EvalError(message: "Single '{' encountered in format string") }
                let field = PyString.make(a[(i + 1)..<close])
                if field.contains(":") || field.contains("!") {
                    throw EvalError(message: "str.format: conversions and format specs ('{\(field)}') are not supported")
                }
                let key = field
                let v: Value?
                if key.isEmpty { v = auto < args.positional.count ? args.positional[auto] : nil; auto += 1 } else if let n = Int(key) { v = n < args.positional.count ? args.positional[n] : nil } else { v = args.named(key) }
                guard let v else { throw EvalError(message: "format: missing argument for '{\(field)}'") }
                out += v.pythonString
                i = close + 1
                continue
            }
            out.unicodeScalars.append(c)
            i += 1
        }
        return out
    }
}
