import Foundation

/// jinja2's builtin tests (`x is defined`, `n is divisibleby 3`, ...).
extension Interpreter {
    func applyTest(_ name: String, to value: Value, arguments args: CallArguments) throws -> Bool {
        let other = args.positional.first ?? args.keyword.first?.1
        func compareWith(_ op: (Int) -> Bool) throws -> Bool {
            guard let other else { throw EvalError(message: "test '\(name)' needs an argument") }
            guard let c = Value.compare(value, other) else {
                throw EvalError(message: "'\(name)' not supported between '\(value.typeName)' and '\(other.typeName)'")
            }
            return op(c)
        }
        switch name {
        case "defined": return !value.isUndefined
        case "undefined": return value.isUndefined
        case "none": return value.isNone
        case "boolean": if case .bool = value { return true }; return false
        case "true": if case .bool(true) = value { return true }; return false
        case "false": if case .bool(false) = value { return true }; return false
        case "integer": if case .int = value { return true }; return false
        case "float": if case .double = value { return true }; return false
        case "number": return value.numeric != nil
        case "string": if case .string = value { return true }; return false
        case "mapping":
            switch value { case .dict: return true; default: return false }
        case "iterable":
            switch value { case .list, .tuple, .dict, .string, .undefined: return true; default: return false }
        case "sequence":
            switch value { case .list, .tuple, .dict, .string: return true; default: return false }
        case "callable":
            if case .function = value { return true }; return false
        case "even", "odd":
            // jinja2 tests `value % 2 == 1` (odd) / `== 0` (even), so floats work too.
            switch value.numeric {
            case .int(let i)?: return (i % 2 == 0) == (name == "even")
            case .double(let d)?:
                let r = d - 2 * (d / 2).rounded(.down)
                return name == "even" ? r == 0 : r == 1
            default:
                if value.isUndefined { throw undefinedError(value) }
                throw EvalError(message: "unsupported operand type(s) for %: '\(value.typeName)' and 'int'")
            }
        case "divisibleby":
            guard case .int(let i)? = value.numeric, case .int(let n)? = other?.numeric, n != 0 else {
                throw EvalError(message: "test 'divisibleby' needs integers")
            }
            return i % n == 0
        case "eq", "equalto", "==":
            guard let other else { throw EvalError(message: "test '\(name)' needs an argument") }
            return Value.equal(value, other)
        case "ne", "!=":
            guard let other else { throw EvalError(message: "test '\(name)' needs an argument") }
            return !Value.equal(value, other)
        case "lt", "lessthan", "<": return try compareWith { $0 < 0 }
        case "le", "<=": return try compareWith { $0 <= 0 }
        case "gt", "greaterthan", ">": return try compareWith { $0 > 0 }
        case "ge", ">=": return try compareWith { $0 >= 0 }
        case "in":
            guard let other else { throw EvalError(message: "test 'in' needs an argument") }
            return try contains(other, value)
        case "sameas":
            guard let other else { throw EvalError(message: "test 'sameas' needs an argument") }
            switch (value, other) {
            case (.none, .none): return true
            case (.bool(let a), .bool(let b)): return a == b
            case (.namespace(let a), .namespace(let b)): return a === b
            default: return false
            }
        case "lower":
            return PyString.isLower(value.pythonString)
        case "upper":
            return PyString.isUpper(value.pythonString)
        default:
            throw EvalError(message: "No test named '\(name)'.")
        }
    }
}
