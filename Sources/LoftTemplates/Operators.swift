import Foundation

/// Binary operators, membership and iteration with Python semantics.
extension Interpreter {
    func binary(_ op: String, _ a: Value, _ b: Value) throws -> Value {
        switch op {
        case "==": return .bool(Value.equal(a, b))
        case "!=": return .bool(!Value.equal(a, b))
        case "<", ">", "<=", ">=":
            guard let c = Value.compare(a, b) else {
                if a.isUndefined { throw undefinedError(a) }
                if b.isUndefined { throw undefinedError(b) }
                throw EvalError(message: "'\(op)' not supported between instances of '\(a.typeName)' and '\(b.typeName)'")
            }
            switch op {
            case "<": return .bool(c < 0)
            case ">": return .bool(c > 0)
            case "<=": return .bool(c <= 0)
            default: return .bool(c >= 0)
            }
        case "in": return .bool(try contains(b, a))
        case "not in": return .bool(!(try contains(b, a)))
        case "~": return .string(a.pythonString + b.pythonString)
        default: break
        }
        if a.isUndefined { throw undefinedError(a) }
        if b.isUndefined { throw undefinedError(b) }
        switch (op, a, b) {
        case ("%", .string(let format), _): return .string(try Interpreter.percentFormat(format, b))
        case ("+", .string(let x), .string(let y)): return .string(x + y)
        case ("+", .list(let x), .list(let y)): return .list(x + y)
        case ("*", .string(let s), _), ("*", _, .string(let s)):
            guard case .int(let n)? = (a.numeric ?? b.numeric) else { break }
            try Interpreter.checkRepetition(n, s.unicodeScalars.count)
            return .string(String(repeating: s, count: max(0, n)))
        case ("*", .list(let l), _), ("*", _, .list(let l)):
            guard case .int(let n)? = (a.numeric ?? b.numeric) else { break }
            try Interpreter.checkRepetition(n, l.count)
            return .list(Array(repeating: l, count: max(0, n)).flatMap { $0 })
        default: break
        }
        guard let x = a.numeric, let y = b.numeric else {
            if op == "+", case .string = a {
                throw EvalError(message: "can only concatenate str (not \"\(b.typeName)\") to str")
            }
            throw EvalError(message: "unsupported operand type(s) for \(op): '\(a.typeName)' and '\(b.typeName)'")
        }
        if case .int(let i) = x, case .int(let j) = y {
            switch op {
            case "+": return .int(i &+ j)
            case "-": return .int(i &- j)
            case "*": return .int(i &* j)
            case "/":
                guard j != 0 else { throw EvalError(message: "division by zero") }
                return .double(Double(i) / Double(j))
            case "//":
                guard j != 0 else { throw EvalError(message: "integer division or modulo by zero") }
                let q = i.dividedReportingOverflow(by: j).partialValue
                let r = i.remainderReportingOverflow(dividingBy: j).partialValue
                return .int((r != 0 && ((r < 0) != (j < 0))) ? q &- 1 : q)
            case "%":
                guard j != 0 else { throw EvalError(message: "integer division or modulo by zero") }
                let r = i.remainderReportingOverflow(dividingBy: j).partialValue
                return .int((r != 0 && ((r < 0) != (j < 0))) ? r &+ j : r)
            case "**":
                if j >= 0 {
                    var result = 1
                    for _ in 0..<min(j, 4096) { result = result &* i }
                    return .int(result)
                }
                return .double(pow(Double(i), Double(j)))
            default: break
            }
        }
        let p = x.asDouble, q = y.asDouble
        switch op {
        case "+": return .double(p + q)
        case "-": return .double(p - q)
        case "*": return .double(p * q)
        case "/":
            guard q != 0 else { throw EvalError(message: "float division by zero") }
            return .double(p / q)
        case "//":
            guard q != 0 else { throw EvalError(message: "float floor division by zero") }
            return .double(Interpreter.pythonFloorDivide(p, q))
        case "%":
            guard q != 0 else { throw EvalError(message: "float modulo") }
            let r = p.truncatingRemainder(dividingBy: q)
            // Python's result takes the divisor's sign, zero included.
            if r == 0 { return .double(q < 0 ? -0.0 : 0.0) }
            return .double(((r < 0) != (q < 0)) ? r + q : r)
        case "**": return .double(pow(p, q))
        default: throw EvalError(message: "unknown operator \(op)")
        }
    }

    /// CPython's float floor division (via fmod, so `7 // 0.1` is 69.0 as in Python).
    static func pythonFloorDivide(_ vx: Double, _ wx: Double) -> Double {
        var mod = fmod(vx, wx)
        var div = (vx - mod) / wx
        if mod != 0 && ((wx < 0) != (mod < 0)) {
            mod += wx
            div -= 1.0
        }
        if div == 0 { return copysign(0, vx / wx) }
        var floored = div.rounded(.down)
        if div - floored > 0.5 { floored += 1.0 }
        return floored
    }

    /// Python's printf-style `format % args` for the conversions templates use:
    /// `%s`, `%r`, `%d`/`%i`, `%f` (with precision), `%(name)s` and `%%`.
    static func percentFormat(_ format: String, _ args: Value) throws -> String {
        var positional: [Value]
        var mapping: OrderedDict?
        switch args {
        case .tuple(let items): positional = items
        case .dict(let d): positional = [args]; mapping = d
        default: positional = [args]
        }
        let chars = Array(format.unicodeScalars)
        var out = ""
        var used = 0
        var i = 0
        while i < chars.count {
            guard chars[i] == "%" else { out.unicodeScalars.append(chars[i]); i += 1; continue }
            i += 1
            guard i < chars.count else { throw EvalError(message: "incomplete format") }
            if chars[i] == "%" { out += "%"; i += 1; continue }
            var value: Value
            if chars[i] == "(" {
                guard let close = chars[i...].firstIndex(of: ")"), let mapping else { throw EvalError(message: "format requires a mapping") }
                let key = PyString.make(chars[(i + 1)..<close])
                guard let v = mapping[key] else { throw EvalError(message: "KeyError: '\(key)'") }
                value = v
                i = close + 1
            } else {
                guard used < positional.count else { throw EvalError(message: "not enough arguments for format string") }
                value = positional[used]
                used += 1
            }
            var precision: Int?
            if i < chars.count, chars[i] == "." {
                var j = i + 1, n = 0
                while j < chars.count, let d = Int(String(chars[j])) { n = n * 10 + d; j += 1 }
                precision = n
                i = j
            }
            guard i < chars.count else { throw EvalError(message: "incomplete format") }
            switch chars[i] {
            case "s": out += value.pythonString
            case "r": out += value.pythonRepr
            case "d", "i":
                guard let n = value.numeric else { throw EvalError(message: "%d format: a real number is required, not \(value.typeName)") }
                if case .int(let k) = n { out += String(k) } else { out += String(Int(exactly: n.asDouble.rounded(.towardZero)) ?? 0) }
            case "f":
                guard let n = value.numeric else { throw EvalError(message: "must be real number, not \(value.typeName)") }
                out += String(format: "%.\(precision ?? 6)f", n.asDouble)
            default:
                throw EvalError(message: "unsupported format character '\(Character(chars[i]))'")
            }
            i += 1
        }
        // Python: leftover arguments are an error, except with a mapping-like argument.
        let mappingLike: Bool
        switch args { case .dict, .list: mappingLike = true; default: mappingLike = false }
        if used < positional.count && !mappingLike && !(args.sequenceItems?.isEmpty ?? false) {
            throw EvalError(message: "not all arguments converted during string formatting")
        }
        return out
    }

    /// Refuses `'x' * n` results too large to build (a hostile template must not exhaust memory).
    static func checkRepetition(_ n: Int, _ unit: Int) throws {
        if n > 0 && unit > 0 && n > 50_000_000 / unit {
            throw EvalError(message: "repetition result is too large")
        }
    }

    func contains(_ container: Value, _ element: Value) throws -> Bool {
        switch container {
        case .string(let s):
            guard case .string(let e) = element else {
                throw EvalError(message: "'in <string>' requires string as left operand, not \(element.typeName)")
            }
            return PyString.find(s, e) != nil
        case .list(let l), .tuple(let l): return l.contains { Value.equal($0, element) }
        case .dict(let d):
            switch element {
            case .list, .dict, .namespace: throw EvalError(message: "unhashable type: '\(element.typeName)'")
            case .string(let k): return d[k] != nil
            default: return false
            }
        case .namespace(let ns):
            guard case .string(let k) = element else { return false }
            return ns.attributes[k] != nil
        case .undefined: return false
        default: throw EvalError(message: "argument of type '\(container.typeName)' is not iterable")
        }
    }

    /// The items a for loop or filter sees: list items, dict keys, string characters.
    func iterate(_ v: Value) throws -> [Value] {
        switch v {
        case .list(let l), .tuple(let l): return l
        case .dict(let d): return d.keys.map { .string($0) }
        case .string(let s): return s.unicodeScalars.map { .string(String($0)) }
        case .undefined: return []
        case .namespace(let ns): return ns.attributes.keys.map { .string($0) }
        default: throw EvalError(message: "'\(v.typeName)' object is not iterable")
        }
    }
}
