import Foundation

/// Attribute, item and slice access with jinja2's sandboxed lookup rules.
extension Interpreter {
    /// `obj.name`: Python attribute first (methods), then item, as jinja2's getattr.
    func attribute(of object: Value, _ name: String) throws -> Value {
        switch object {
        case .undefined: throw undefinedError(object)
        case .namespace(let ns):
            return ns.attributes[name] ?? .undefined(hint: "'Namespace' object has no attribute '\(name)'")
        case .dict(let d):
            if let method = boundMethod(object, name) { return method }
            return d[name] ?? .undefined(hint: "'dict object' has no attribute '\(name)'")
        default:
            if let method = boundMethod(object, name) { return method }
            return .undefined(hint: "'\(object.typeName) object' has no attribute '\(name)'")
        }
    }

    /// `obj[key]`: item first, then attribute, as jinja2's getitem.
    func item(of object: Value, _ key: Value) throws -> Value {
        switch (object, key) {
        case (.undefined, _): throw undefinedError(object)
        case (.dict(let d), .string(let k)):
            if let v = d[k] { return v }
            if let method = boundMethod(object, k) { return method }
            return .undefined(hint: "'dict object' has no attribute '\(k)'")
        case (.dict(let d), _):
            return d[key.pythonString] ?? .undefined(hint: "'dict object' has no attribute \(key.pythonRepr)")
        case (.list(let l), _), (.tuple(let l), _):
            guard let i = key.numeric, case .int(var index) = i else {
                if case .string(let k) = key { return try attribute(of: object, k) }
                throw EvalError(message: "list indices must be integers, not \(key.typeName)")
            }
            if index < 0 { index += l.count }
            guard index >= 0 && index < l.count else { return .undefined(hint: "list object has no element \(key.pythonRepr)") }
            return l[index]
        case (.string(let s), _):
            guard let i = key.numeric, case .int(var index) = i else {
                if case .string(let k) = key { return try attribute(of: object, k) }
                throw EvalError(message: "string indices must be integers")
            }
            let scalars = Array(s.unicodeScalars)
            if index < 0 { index += scalars.count }
            guard index >= 0 && index < scalars.count else { return .undefined(hint: "str object has no element \(index)") }
            return .string(String(scalars[index]))
        case (.namespace, .string(let k)):
            return try attribute(of: object, k)
        default:
            return .undefined(hint: "'\(object.typeName) object' has no attribute \(key.pythonRepr)")
        }
    }

    func slice(_ object: Value, start: Value?, stop: Value?, step: Value?) throws -> Value {
        func int(_ v: Value?) throws -> Int? {
            guard let v, !v.isNone else { return nil }
            guard case .int(let i)? = v.numeric else { throw EvalError(message: "slice indices must be integers or None") }
            return i
        }
        let st = try int(step) ?? 1
        guard st != 0 else { throw EvalError(message: "slice step cannot be zero") }
        func indices(_ count: Int) throws -> [Int] {
            var a = try int(start), b = try int(stop)
            if st > 0 {
                var lo = a ?? 0, hi = b ?? count
                if lo < 0 { lo = max(0, lo + count) }
                if hi < 0 { hi = max(0, hi + count) }
                lo = min(lo, count); hi = min(hi, count)
                return lo < hi ? Array(stride(from: lo, to: hi, by: st)) : []
            } else {
                if let x = a, x < 0 { a = x + count }
                if let y = b, y < 0 { b = y + count }
                let hi = min(a ?? (count - 1), count - 1)
                let lo = b ?? -1
                guard hi > lo else { return [] }
                return Array(stride(from: hi, to: max(lo, -1), by: st))
            }
        }
        switch object {
        case .list(let l): return .list(try indices(l.count).map { l[$0] })
        case .tuple(let l): return .tuple(try indices(l.count).map { l[$0] })
        case .string(let s):
            let scalars = Array(s.unicodeScalars)
            var out = String.UnicodeScalarView()
            for i in try indices(scalars.count) { out.append(scalars[i]) }
            return .string(String(out))
        case .undefined: throw undefinedError(object)
        default: throw EvalError(message: "'\(object.typeName)' object is not subscriptable")
        }
    }
}
