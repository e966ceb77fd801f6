import Foundation

/// Recursive-descent parser following jinja2's grammar and operator precedence:
/// conditional < or < and < not < comparisons/in < + - < ~ < * / // % < ** <
/// unary - + < postfix (. [] ()) and filters/tests.
struct Parser {
    private let tokens: [Token]
    private var pos = 0
    /// Nesting depth of expressions and blocks, bounded so hostile input cannot overflow the stack.
    private var depth = 0
    private static let maxDepth = 300
    /// Names read inside the macro bodies being parsed (jinja2 lets a macro take
    /// extra arguments only when its body reads `varargs` / `kwargs`).
    private var namesRead: [Set<String>] = []

    init(tokens: [Token]) { self.tokens = tokens }

    static func parse(_ source: String, trimBlocks: Bool = true, lstripBlocks: Bool = true,
                      keepTrailingNewline: Bool = false) throws -> [Statement] {
        var lexer = Lexer(source, trimBlocks: trimBlocks, lstripBlocks: lstripBlocks, keepTrailingNewline: keepTrailingNewline)
        var parser = Parser(tokens: try lexer.tokenize())
        let (body, end) = try parser.parseStatements(until: [])
        if let end { throw parser.error("unexpected '\(end)'", at: parser.previous) }
        return body
    }

    // MARK: token helpers

    private var current: Token { tokens[min(pos, tokens.count - 1)] }
    private var previous: Token { tokens[max(0, min(pos - 1, tokens.count - 1))] }
    private func peek(_ n: Int = 1) -> Token { tokens[min(pos + n, tokens.count - 1)] }

    private func error(_ message: String, at token: Token? = nil) -> TemplateError {
        let t = token ?? current
        return .syntax(message: message, line: t.line, column: t.column)
    }

    private func describe(_ k: TokenKind) -> String {
        switch k {
        case .text: return "template text"
        case .variableBegin: return "'{{'"
        case .variableEnd: return "'}}'"
        case .blockBegin: return "'{%'"
        case .blockEnd: return "'%}'"
        case .name(let n): return "'\(n)'"
        case .string(let s): return "string '\(s)'"
        case .integer(let i): return "\(i)"
        case .float(let d): return "\(d)"
        case .op(let o): return "'\(o)'"
        case .eof: return "end of template"
        }
    }

    private func isOp(_ o: String) -> Bool { current.kind == .op(o) }
    private func isName(_ n: String) -> Bool { current.kind == .name(n) }

    private mutating func skipOp(_ o: String) -> Bool {
        if isOp(o) { pos += 1; return true }
        return false
    }

    private mutating func skipName(_ n: String) -> Bool {
        if isName(n) { pos += 1; return true }
        return false
    }

    private mutating func expectOp(_ o: String) throws {
        guard skipOp(o) else { throw error("expected '\(o)', found \(describe(current.kind))") }
    }

    private mutating func expectName() throws -> String {
        guard case .name(let n) = current.kind else { throw error("expected a name, found \(describe(current.kind))") }
        pos += 1
        return n
    }

    private mutating func expectBlockEnd() throws {
        guard current.kind == .blockEnd else { throw error("expected end of statement '%}', found \(describe(current.kind))") }
        pos += 1
    }

    // MARK: statements

    /// Parses statements until a `{% name %}` with name in `until`; returns the body
    /// and that name, leaving the parser just after the name.
    private mutating func parseStatements(until: Set<String>) throws -> ([Statement], String?) {
        var body: [Statement] = []
        while true {
            let tok = current
            switch tok.kind {
            case .eof:
                if !until.isEmpty {
                    throw error("unexpected end of template; expected one of: \(until.sorted().joined(separator: ", "))")
                }
                return (body, nil)
            case .text(let s):
                pos += 1
                body.append(.text(s))
            case .variableBegin:
                pos += 1
                let e = try parseTuple()
                guard current.kind == .variableEnd else { throw error("expected end of print statement '}}', found \(describe(current.kind))") }
                pos += 1
                body.append(.output(e, line: tok.line))
            case .blockBegin:
                pos += 1
                guard case .name(let keyword) = current.kind else { throw error("expected a statement name after '{%'") }
                if until.contains(keyword) {
                    pos += 1
                    return (body, keyword)
                }
                body.append(try parseStatement(keyword, line: current.line))
            default:
                throw error("unexpected \(describe(tok.kind))")
            }
        }
    }

    private mutating func parseStatement(_ keyword: String, line: Int) throws -> Statement {
        let keywordToken = current
        pos += 1
        depth += 1
        defer { depth -= 1 }
        guard depth < Parser.maxDepth else { throw error("blocks are nested too deeply", at: keywordToken) }
        switch keyword {
        case "if": return try parseIf(line: line)
        case "for": return try parseFor(line: line)
        case "set": return try parseSet(line: line)
        case "macro": return try parseMacro(line: line)
        case "call": return try parseCallBlock(line: line)
        case "filter":
            let filters = try parseFilterChain()
            try expectBlockEnd()
            let (body, _) = try parseStatements(until: ["endfilter"])
            try expectBlockEnd()
            return .filterBlock(filters: filters, body: body, line: line)
        case "generation":
            try expectBlockEnd()
            let (body, _) = try parseStatements(until: ["endgeneration"])
            try expectBlockEnd()
            return .generation(body: body, line: line)
        case "break":
            try expectBlockEnd()
            return .breakLoop(line: line)
        case "continue":
            try expectBlockEnd()
            return .continueLoop(line: line)
        default:
            throw error("unknown statement '\(keyword)'", at: keywordToken)
        }
    }

    private mutating func parseIf(line: Int) throws -> Statement {
        var branches: [(Expr, [Statement])] = []
        var condition = try parseTuple()
        while true {
            try expectBlockEnd()
            let (body, end) = try parseStatements(until: ["elif", "else", "endif"])
            branches.append((condition, body))
            if end == "elif" {
                condition = try parseTuple()
                continue
            }
            if end == "else" {
                try expectBlockEnd()
                let (otherwise, _) = try parseStatements(until: ["endif"])
                try expectBlockEnd()
                return .ifChain(branches, otherwise: otherwise, line: line)
            }
            try expectBlockEnd()
            return .ifChain(branches, otherwise: [], line: line)
        }
    }

    private mutating func parseAssignTarget(allowAttribute: Bool) throws -> AssignTarget {
        let parenthesized = skipOp("(")
        let first = try expectName()
        if allowAttribute, !parenthesized, skipOp(".") {
            return .attribute(first, try expectName())
        }
        var names = [first]
        var sawComma = false
        while skipOp(",") {
            sawComma = true
            if case .name(let n) = current.kind, n != "in" { pos += 1; names.append(n) } else { break }
        }
        if parenthesized { try expectOp(")") }
        return (names.count == 1 && !sawComma) ? .name(first) : .names(names)
    }

    private mutating func parseFor(line: Int) throws -> Statement {
        let target = try parseAssignTarget(allowAttribute: false)
        guard skipName("in") else { throw error("expected 'in' in for loop, found \(describe(current.kind))") }
        let iterable = try parseTuple(withCondition: false)
        var condition: Expr?
        if skipName("if") { condition = try parseTuple() }
        if skipName("recursive") { throw error("recursive for loops are not supported", at: previous) }
        try expectBlockEnd()
        let (body, end) = try parseStatements(until: ["endfor", "else"])
        var otherwise: [Statement] = []
        if end == "else" {
            try expectBlockEnd()
            (otherwise, _) = try parseStatements(until: ["endfor"])
        }
        try expectBlockEnd()
        return .forLoop(target: target, iterable: iterable, condition: condition, body: body, otherwise: otherwise, line: line)
    }

    private mutating func parseSet(line: Int) throws -> Statement {
        let target = try parseAssignTarget(allowAttribute: true)
        if skipOp("=") {
            let value = try parseTuple()
            try expectBlockEnd()
            return .set(target, value, line: line)
        }
        let filters = isOp("|") ? try parseFilterChain(leadingPipe: true) : []
        try expectBlockEnd()
        let (body, _) = try parseStatements(until: ["endset"])
        try expectBlockEnd()
        return .setBlock(target, filters: filters, body: body, line: line)
    }

    private mutating func parseParameters() throws -> [(String, Expr?)] {
        var params: [(String, Expr?)] = []
        try expectOp("(")
        while !isOp(")") {
            if !params.isEmpty { try expectOp(",") }
            if isOp(")") { break }
            let name = try expectName()
            var defaultValue: Expr?
            if skipOp("=") { defaultValue = try parseExpression() }
            params.append((name, defaultValue))
        }
        try expectOp(")")
        return params
    }

    private mutating func parseMacro(line: Int) throws -> Statement {
        let name = try expectName()
        let params = try parseParameters()
        try expectBlockEnd()
        namesRead.append([])
        let (body, _) = try parseStatements(until: ["endmacro"])
        let read = namesRead.removeLast()
        if !namesRead.isEmpty { namesRead[namesRead.count - 1].formUnion(read) }
        if case .name = current.kind { pos += 1 }  // `{% endmacro name %}`
        try expectBlockEnd()
        return .macro(MacroDefinition(name: name, parameters: params, body: body,
                                      acceptsExtraPositional: read.contains("varargs"),
                                      acceptsExtraKeywords: read.contains("kwargs")), line: line)
    }

    private mutating func parseCallBlock(line: Int) throws -> Statement {
        let params = isOp("(") ? try parseParameters() : []
        let call = try parseExpression()
        guard case .call = call else { throw error("expected a call after '{% call'", at: previous) }
        try expectBlockEnd()
        let (body, _) = try parseStatements(until: ["endcall"])
        try expectBlockEnd()
        return .callBlock(call: call, callerParameters: params, body: body, line: line)
    }

    /// `name(args) | name | ...` as in `{% filter %}` and `{% set x | f %}`.
    private mutating func parseFilterChain(leadingPipe: Bool = false) throws -> [(String, Arguments)] {
        var filters: [(String, Arguments)] = []
        if leadingPipe { try expectOp("|") }
        repeat {
            var name = try expectName()
            while skipOp(".") { name += "." + (try expectName()) }
            let args = isOp("(") ? try parseCallArguments() : Arguments()
            filters.append((name, args))
        } while skipOp("|")
        return filters
    }

    // MARK: expressions

    /// Counts one more link of an operator/postfix/filter chain: a long chain
    /// nests as deeply as parentheses do when evaluated.
    private func link(_ links: inout Int) throws {
        links += 1
        guard depth + links < Parser.maxDepth else { throw error("expression is nested too deeply") }
    }

    /// A comma-separated list becomes a tuple, as in jinja2's `parse_tuple`.
    private mutating func parseTuple(withCondition: Bool = true) throws -> Expr {
        var items: [Expr] = []
        var sawComma = false
        while true {
            if !items.isEmpty {
                guard skipOp(",") else { break }
                sawComma = true
                if current.kind == .blockEnd || current.kind == .variableEnd || isOp(")") || isName("in") { break }
            }
            items.append(withCondition ? try parseExpression() : try parseOr())
        }
        if items.count == 1 && !sawComma { return items[0] }
        return .tuple(items)
    }

    mutating func parseExpression() throws -> Expr {
        var expr = try parseOr()
        var links = 0
        while skipName("if") {
            try link(&links)
            let condition = try parseOr()
            var otherwise: Expr?
            if skipName("else") { otherwise = try parseExpression() }
            expr = .conditional(then: expr, condition: condition, otherwise: otherwise)
        }
        return expr
    }

    private mutating func parseOr() throws -> Expr {
        var left = try parseAnd()
        var links = 0
        while skipName("or") { try link(&links); left = .or(left, try parseAnd()) }
        return left
    }

    private mutating func parseAnd() throws -> Expr {
        var left = try parseNot()
        var links = 0
        while skipName("and") { try link(&links); left = .and(left, try parseNot()) }
        return left
    }

    private mutating func parseNot() throws -> Expr {
        if skipName("not") {
            depth += 1
            defer { depth -= 1 }
            guard depth < Parser.maxDepth else { throw error("expression is nested too deeply") }
            return .not(try parseNot())
        }
        return try parseCompare()
    }

    private mutating func parseCompare() throws -> Expr {
        let first = try parseMath1()
        var left = first
        var chain: Expr?
        var links = 0
        while true {
            try link(&links)
            var op: String
            if case .op(let o) = current.kind, ["==", "!=", "<", ">", "<=", ">="].contains(o) {
                op = o
                pos += 1
            } else if isName("in") {
                op = "in"
                pos += 1
            } else if isName("not"), peek().kind == .name("in") {
                op = "not in"
                pos += 2
            } else {
                break
            }
            let right = try parseMath1()
            let comparison = Expr.binary(op, left, right)
            chain = chain.map { .and($0, comparison) } ?? comparison
            left = right
        }
        return chain ?? first
    }

    private mutating func parseMath1() throws -> Expr {
        var left = try parseConcat()
        var links = 0
        while case .op(let o) = current.kind, o == "+" || o == "-" {
            try link(&links)
            pos += 1
            left = .binary(o, left, try parseConcat())
        }
        return left
    }

    private mutating func parseConcat() throws -> Expr {
        var left = try parseMath2()
        var links = 0
        while skipOp("~") { try link(&links); left = .binary("~", left, try parseMath2()) }
        return left
    }

    private mutating func parseMath2() throws -> Expr {
        var left = try parsePow()
        var links = 0
        while case .op(let o) = current.kind, ["*", "/", "//", "%"].contains(o) {
            try link(&links)
            pos += 1
            left = .binary(o, left, try parsePow())
        }
        return left
    }

    private mutating func parsePow() throws -> Expr {
        var left = try parseUnary()
        var links = 0
        while skipOp("**") { try link(&links); left = .binary("**", left, try parseUnary()) }
        return left
    }

    private mutating func parseUnary(withFilter: Bool = true) throws -> Expr {
        var node: Expr
        depth += 1
        defer { depth -= 1 }
        guard depth < Parser.maxDepth else { throw error("expression is nested too deeply") }
        if skipOp("-") {
            node = .negate(try parseUnary(withFilter: false))
        } else if skipOp("+") {
            node = .plus(try parseUnary(withFilter: false))
        } else {
            node = try parsePrimary()
        }
        node = try parsePostfix(node)
        if withFilter { node = try parseFilterAndTests(node) }
        return node
    }

    private mutating func parsePrimary() throws -> Expr {
        let tok = current
        depth += 1
        defer { depth -= 1 }
        guard depth < Parser.maxDepth else { throw error("expression is nested too deeply") }
        switch tok.kind {
        case .name(let n):
            pos += 1
            if !namesRead.isEmpty { namesRead[namesRead.count - 1].insert(n) }
            switch n {
            case "true", "True": return .literal(.bool(true))
            case "false", "False": return .literal(.bool(false))
            case "none", "None": return .literal(.none)
            default: return .name(n)
            }
        case .string(let s):
            pos += 1
            var text = s
            while case .string(let more) = current.kind { text += more; pos += 1 }
            return .literal(.string(text))
        case .integer(let i):
            pos += 1
            return .literal(.int(i))
        case .float(let d):
            pos += 1
            return .literal(.double(d))
        case .op("("):
            pos += 1
            if skipOp(")") { return .tuple([]) }
            let inner = try parseTuple()
            try expectOp(")")
            return inner
        case .op("["):
            pos += 1
            var items: [Expr] = []
            while !isOp("]") {
                if !items.isEmpty { try expectOp(",") }
                if isOp("]") { break }
                items.append(try parseExpression())
            }
            try expectOp("]")
            return .list(items)
        case .op("{"):
            pos += 1
            var pairs: [(Expr, Expr)] = []
            while !isOp("}") {
                if !pairs.isEmpty { try expectOp(",") }
                if isOp("}") { break }
                let key = try parseExpression()
                try expectOp(":")
                pairs.append((key, try parseExpression()))
            }
            try expectOp("}")
            return .dict(pairs)
        default:
            throw error("unexpected \(describe(tok.kind))")
        }
    }

    private mutating func parsePostfix(_ start: Expr) throws -> Expr {
        var node = start
        var links = 0
        while true {
            try link(&links)
            if skipOp(".") {
                switch current.kind {
                case .name(let n): pos += 1; node = .attribute(node, n)
                case .integer(let i): pos += 1; node = .item(node, .literal(.int(i)))
                default: throw error("expected an attribute name after '.'")
                }
            } else if isOp("[") {
                pos += 1
                node = try parseSubscript(node)
            } else if isOp("(") {
                node = .call(node, try parseCallArguments())
            } else {
                return node
            }
        }
    }

    private mutating func parseSubscript(_ target: Expr) throws -> Expr {
        var start: Expr?, stop: Expr?, step: Expr?
        if !isOp(":") { start = try parseExpression() }
        if !skipOp(":") {
            try expectOp("]")
            guard let start else { throw error("empty subscript") }
            return .item(target, start)
        }
        if !isOp("]") && !isOp(":") { stop = try parseExpression() }
        if skipOp(":"), !isOp("]") { step = try parseExpression() }
        try expectOp("]")
        return .slice(target, start: start, stop: stop, step: step)
    }

    private mutating func parseCallArguments() throws -> Arguments {
        var args = Arguments()
        try expectOp("(")
        var first = true
        while !isOp(")") {
            if !first { try expectOp(",") }
            first = false
            if isOp(")") { break }
            if case .name(let n) = current.kind, peek().kind == .op("=") {
                pos += 2
                args.keyword.append((n, try parseExpression()))
            } else {
                if !args.keyword.isEmpty { throw error("positional argument after keyword argument") }
                args.positional.append(try parseExpression())
            }
        }
        try expectOp(")")
        return args
    }

    private mutating func parseFilterAndTests(_ start: Expr) throws -> Expr {
        var node = start
        var links = 0
        while true {
            try link(&links)
            if isOp("|") {
                let line = current.line
                pos += 1
                var name = try expectName()
                while skipOp(".") { name += "." + (try expectName()) }
                let args = isOp("(") ? try parseCallArguments() : Arguments()
                node = .filter(node, name: name, args, line: line)
            } else if isName("is") {
                let line = current.line
                pos += 1
                let negated = skipName("not")
                var name = try expectName()
                while skipOp(".") { name += "." + (try expectName()) }
                var args = Arguments()
                if isOp("(") {
                    args = try parseCallArguments()
                } else if startsPrimary(current.kind) {
                    if isName("is") { throw error("tests cannot be chained with 'is'") }
                    args.positional = [try parsePostfix(try parsePrimary())]
                }
                node = .test(node, name: name, args, negated: negated, line: line)
            } else if isOp("(") {
                node = .call(node, try parseCallArguments())
            } else {
                return node
            }
        }
    }

    private func startsPrimary(_ k: TokenKind) -> Bool {
        switch k {
        case .name(let n): return !["else", "or", "and"].contains(n)
        case .string, .integer, .float: return true
        case .op(let o): return o == "(" || o == "[" || o == "{"
        default: return false
        }
    }
}
