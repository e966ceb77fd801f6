import Foundation

/// Expressions of the template language.
indirect enum Expr {
    case literal(Value)
    case name(String)
    case list([Expr])
    case tuple([Expr])
    case dict([(Expr, Expr)])
    case attribute(Expr, String)
    case item(Expr, Expr)
    case slice(Expr, start: Expr?, stop: Expr?, step: Expr?)
    case call(Expr, Arguments)
    case filter(Expr, name: String, Arguments, line: Int)
    case test(Expr, name: String, Arguments, negated: Bool, line: Int)
    case not(Expr)
    case negate(Expr)
    case plus(Expr)
    case binary(String, Expr, Expr)
    case and(Expr, Expr)
    case or(Expr, Expr)
    case conditional(then: Expr, condition: Expr, otherwise: Expr?)
}

struct Arguments {
    var positional: [Expr] = []
    var keyword: [(String, Expr)] = []
}

/// Where an assignment stores: one name, several (tuple unpacking), or a namespace attribute.
enum AssignTarget {
    case name(String)
    case names([String])
    case attribute(String, String)
}

struct MacroDefinition {
    let name: String
    let parameters: [(String, Expr?)]
    let body: [Statement]
    /// Whether the body reads `varargs` / `kwargs`, which lets callers pass extra arguments.
    var acceptsExtraPositional = false
    var acceptsExtraKeywords = false
}

/// Statements: the template's structure after parsing.
indirect enum Statement {
    case text(String)
    case output(Expr, line: Int)
    case ifChain([(Expr, [Statement])], otherwise: [Statement], line: Int)
    case forLoop(target: AssignTarget, iterable: Expr, condition: Expr?, body: [Statement], otherwise: [Statement], line: Int)
    case set(AssignTarget, Expr, line: Int)
    case setBlock(AssignTarget, filters: [(String, Arguments)], body: [Statement], line: Int)
    case macro(MacroDefinition, line: Int)
    case callBlock(call: Expr, callerParameters: [(String, Expr?)], body: [Statement], line: Int)
    case filterBlock(filters: [(String, Arguments)], body: [Statement], line: Int)
    case generation(body: [Statement], line: Int)
    case breakLoop(line: Int)
    case continueLoop(line: Int)
    case expressionStatement(Expr, line: Int)
}
