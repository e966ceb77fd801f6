import Foundation

/// A variable scope. jinja2 gives each for-loop iteration and each macro call
/// its own scope, so `set` inside them does not leak out (hence `namespace`).
final class Frame {
    var variables: [String: Value] = [:]
    let parent: Frame?
    init(parent: Frame?) { self.parent = parent }

    func lookup(_ name: String) -> Value? {
        var frame: Frame? = self
        while let f = frame {
            if let v = f.variables[name] { return v }
            frame = f.parent
        }
        return nil
    }
}

enum Flow { case normal, breakLoop, continueLoop }

/// Walks the parsed template and writes output.
final class Interpreter {
    private var buffers: [String] = [""]
    private(set) var generationRanges: [Range<Int>] = []
    private var line = 1
    private var depth = 0
    let clock: () -> Date

    init(clock: @escaping () -> Date) { self.clock = clock }

    func render(_ body: [Statement], globals: Frame) throws -> String {
        do {
            _ = try execute(body, in: Frame(parent: globals))
        } catch let e as EvalError {
            throw TemplateError.runtime(message: e.message, line: line)
        } catch let e as RaisedError {
            throw TemplateError.raised(message: e.message)
        }
        return buffers[0]
    }

    private func write(_ s: String) { buffers[buffers.count - 1] += s }

    private func capture(_ work: () throws -> Void) rethrows -> String {
        buffers.append("")
        defer { buffers.removeLast() }
        try work()
        return buffers[buffers.count - 1]
    }

    // MARK: statements

    func execute(_ body: [Statement], in frame: Frame) throws -> Flow {
        for statement in body {
            let flow = try execute(statement, in: frame)
            if flow != .normal { return flow }
        }
        return .normal
    }

    private func execute(_ statement: Statement, in frame: Frame) throws -> Flow {
        switch statement {
        case .text(let s):
            write(s)
        case .output(let e, let l):
            line = l
            let v = try evaluate(e, in: frame)
            write(v.pythonString)
        case .ifChain(let branches, let otherwise, let l):
            line = l
            for (condition, body) in branches where try evaluate(condition, in: frame).truthy {
                return try execute(body, in: frame)
            }
            return try execute(otherwise, in: frame)
        case .forLoop(let target, let iterable, let condition, let body, let otherwise, let l):
            line = l
            return try executeFor(target: target, iterable: iterable, condition: condition, body: body, otherwise: otherwise, in: frame)
        case .set(let target, let e, let l):
            line = l
            try assign(target, try evaluate(e, in: frame), in: frame)
        case .setBlock(let target, let filters, let body, let l):
            line = l
            var value = Value.string(try capture { _ = try execute(body, in: frame) })
            for (name, args) in filters {
                value = try applyFilter(name, to: value, arguments: try evaluate(args, in: frame))
            }
            try assign(target, value, in: frame)
        case .macro(let definition, let l):
            line = l
            frame.variables[definition.name] = makeMacro(definition, closure: frame)
        case .callBlock(let call, let callerParameters, let body, let l):
            line = l
            guard case .call(let callee, let args) = call else { break }
            let caller = makeMacro(MacroDefinition(name: "caller", parameters: callerParameters, body: body,
                                                   acceptsExtraPositional: true, acceptsExtraKeywords: true), closure: frame)
            var evaluated = try evaluate(args, in: frame)
            evaluated.caller = caller
            let result = try callValue(try evaluate(callee, in: frame), evaluated, description: "call block")
            write(result.pythonString)
        case .filterBlock(let filters, let body, let l):
            line = l
            var value = Value.string(try capture { _ = try execute(body, in: frame) })
            for (name, args) in filters {
                value = try applyFilter(name, to: value, arguments: try evaluate(args, in: frame))
            }
            write(value.pythonString)
        case .generation(let body, let l):
            line = l
            let text = try capture { _ = try execute(body, in: frame) }
            // Offsets count Unicode scalars, as Python's len() does.
            let start = buffers[0].unicodeScalars.count
            if buffers.count == 1 {
                generationRanges.append(start..<(start + text.unicodeScalars.count))
            }
            write(text)
        case .breakLoop: return .breakLoop
        case .continueLoop: return .continueLoop
        case .expressionStatement(let e, let l):
            line = l
            _ = try evaluate(e, in: frame)
        }
        return .normal
    }

    private func assign(_ target: AssignTarget, _ value: Value, in frame: Frame) throws {
        switch target {
        case .name(let n):
            frame.variables[n] = value
        case .names(let names):
            let items = try iterate(value)
            guard items.count == names.count else {
                throw EvalError(message: "cannot unpack \(items.count) values into \(names.count) names (\(names.joined(separator: ", ")))")
            }
            for (n, v) in zip(names, items) { frame.variables[n] = v }
        case .attribute(let object, let attribute):
            guard case .namespace(let ns)? = frame.lookup(object) else {
                throw EvalError(message: "cannot assign attribute on non-namespace object '\(object)'")
            }
            if attribute.hasPrefix("_") {
                throw EvalError(message: "Chat templates cannot store underscore-prefixed attributes on a namespace, but got '\(attribute)'. Please rename the attribute.")
            }
            ns.attributes[attribute] = value
        }
    }

    private func executeFor(target: AssignTarget, iterable: Expr, condition: Expr?, body: [Statement],
                            otherwise: [Statement], in frame: Frame) throws -> Flow {
        var items = try iterate(try evaluate(iterable, in: frame))
        if let condition {
            items = try items.filter { item in
                let f = Frame(parent: frame)
                try assign(target, item, in: f)
                return try evaluate(condition, in: f).truthy
            }
        }
        if items.isEmpty { return try execute(otherwise, in: frame) }
        let count = items.count
        for (i, item) in items.enumerated() {
            let f = Frame(parent: frame)
            var loop = OrderedDict()
            loop["index"] = .int(i + 1)
            loop["index0"] = .int(i)
            loop["revindex"] = .int(count - i)
            loop["revindex0"] = .int(count - i - 1)
            loop["first"] = .bool(i == 0)
            loop["last"] = .bool(i == count - 1)
            loop["length"] = .int(count)
            loop["depth"] = .int(1)
            loop["depth0"] = .int(0)
            loop["previtem"] = i > 0 ? items[i - 1] : .undefined(hint: "there is no previous item")
            loop["nextitem"] = i + 1 < count ? items[i + 1] : .undefined(hint: "there is no next item")
            loop["cycle"] = .function(Function(name: "loop.cycle") { args in
                guard !args.positional.isEmpty else { throw EvalError(message: "no items for cycling given") }
                return args.positional[i % args.positional.count]
            })
            f.variables["loop"] = .dict(loop)
            try assign(target, item, in: f)
            let flow = try execute(body, in: f)
            if flow == .breakLoop { break }
        }
        return .normal
    }

    // MARK: macros

    private func makeMacro(_ definition: MacroDefinition, closure: Frame) -> Value {
        .function(Function(name: definition.name) { [unowned self] args in
            try self.callMacro(definition, closure: closure, args)
        })
    }

    private func callMacro(_ definition: MacroDefinition, closure: Frame, _ args: CallArguments) throws -> Value {
        depth += 1
        defer { depth -= 1 }
        guard depth < 100 else { throw EvalError(message: "macro '\(definition.name)' recursed too deeply") }
        let f = Frame(parent: closure)
        let params = definition.parameters
        var extraPositional: [Value] = []
        for (i, v) in args.positional.enumerated() {
            if i < params.count { f.variables[params[i].0] = v } else { extraPositional.append(v) }
        }
        var extraKeyword = OrderedDict()
        for (k, v) in args.keyword {
            if params.contains(where: { $0.0 == k }) { f.variables[k] = v } else { extraKeyword[k] = v }
        }
        for (name, defaultExpr) in params where f.variables[name] == nil {
            if let defaultExpr {
                f.variables[name] = try evaluate(defaultExpr, in: f)
            } else {
                f.variables[name] = .undefined(hint: "parameter '\(name)' was not provided")
            }
        }
        if !extraPositional.isEmpty && !definition.acceptsExtraPositional {
            throw EvalError(message: "macro '\(definition.name)' takes not more than \(params.count) argument(s)")
        }
        if extraKeyword.count > 0 && !definition.acceptsExtraKeywords {
            throw EvalError(message: "macro '\(definition.name)' takes no keyword argument '\(extraKeyword.keys[0])'")
        }
        f.variables["varargs"] = .tuple(extraPositional)
        f.variables["kwargs"] = .dict(extraKeyword)
        if let caller = args.caller { f.variables["caller"] = caller }
        let savedLine = line
        defer { line = savedLine }
        let text = try capture { _ = try execute(definition.body, in: f) }
        return .string(text)
    }

    // MARK: expressions

    func evaluate(_ args: Arguments, in frame: Frame) throws -> CallArguments {
        CallArguments(positional: try args.positional.map { try evaluate($0, in: frame) },
                      keyword: try args.keyword.map { ($0.0, try evaluate($0.1, in: frame)) })
    }

    func evaluate(_ expr: Expr, in frame: Frame) throws -> Value {
        switch expr {
        case .literal(let v): return v
        case .name(let n): return frame.lookup(n) ?? .undefined(hint: "'\(n)' is undefined")
        case .list(let items): return .list(try items.map { try evaluate($0, in: frame) })
        case .tuple(let items): return .tuple(try items.map { try evaluate($0, in: frame) })
        case .dict(let pairs):
            var d = OrderedDict()
            for (k, v) in pairs {
                let key = try evaluate(k, in: frame)
                d[key.pythonString] = try evaluate(v, in: frame)
            }
            return .dict(d)
        case .attribute(let object, let name):
            return try attribute(of: try evaluate(object, in: frame), name)
        case .item(let object, let key):
            return try item(of: try evaluate(object, in: frame), try evaluate(key, in: frame))
        case .slice(let object, let start, let stop, let step):
            return try slice(try evaluate(object, in: frame),
                             start: try start.map { try evaluate($0, in: frame) },
                             stop: try stop.map { try evaluate($0, in: frame) },
                             step: try step.map { try evaluate($0, in: frame) })
        case .call(let callee, let args):
            let f = try evaluate(callee, in: frame)
            return try callValue(f, try evaluate(args, in: frame), description: describeCallee(callee))
        case .filter(let operand, let name, let args, let l):
            line = l
            return try applyFilter(name, to: try evaluate(operand, in: frame), arguments: try evaluate(args, in: frame))
        case .test(let operand, let name, let args, let negated, let l):
            line = l
            let result = try applyTest(name, to: try evaluate(operand, in: frame), arguments: try evaluate(args, in: frame))
            return .bool(negated ? !result : result)
        case .not(let e): return .bool(!(try evaluate(e, in: frame).truthy))
        case .negate(let e):
            let v = try evaluate(e, in: frame)
            switch v.numeric {
            case .int(let i)?: return .int(0 &- i)
            case .double(let d)?: return .double(-d)
            default: throw operandError("-", v)
            }
        case .plus(let e):
            let v = try evaluate(e, in: frame)
            guard let n = v.numeric else { throw operandError("+", v) }
            return n
        case .and(let a, let b):
            let l = try evaluate(a, in: frame)
            return l.truthy ? try evaluate(b, in: frame) : l
        case .or(let a, let b):
            let l = try evaluate(a, in: frame)
            return l.truthy ? l : try evaluate(b, in: frame)
        case .conditional(let then, let condition, let otherwise):
            if try evaluate(condition, in: frame).truthy { return try evaluate(then, in: frame) }
            if let otherwise { return try evaluate(otherwise, in: frame) }
            return .undefined(hint: "the inline if-expression evaluated to false and no else section was defined")
        case .binary(let op, let a, let b):
            return try binary(op, try evaluate(a, in: frame), try evaluate(b, in: frame))
        }
    }

    private func describeCallee(_ e: Expr) -> String {
        switch e {
        case .name(let n): return n
        case .attribute(_, let n): return n
        default: return "value"
        }
    }

    func callValue(_ f: Value, _ args: CallArguments, description: String) throws -> Value {
        switch f {
        case .function(let fn): return try fn.body(args)
        case .undefined(let hint): throw EvalError(message: hint)
        default: throw EvalError(message: "'\(f.typeName)' object is not callable (\(description))")
        }
    }

    func undefinedError(_ v: Value) -> EvalError {
        if case .undefined(let hint) = v { return EvalError(message: hint) }
        return EvalError(message: "value is undefined")
    }

    private func operandError(_ op: String, _ v: Value) -> EvalError {
        if v.isUndefined { return undefinedError(v) }
        return EvalError(message: "bad operand type for unary \(op): '\(v.typeName)'")
    }
}
