import Foundation

/// One lexical token of a template. Text between tags is a single `.text` token;
/// inside `{{ }}` and `{% %}` come expression tokens.
enum TokenKind: Equatable {
    case text(String)
    case variableBegin, variableEnd, blockBegin, blockEnd
    case name(String)
    case string(String)
    case integer(Int)
    case float(Double)
    case op(String)
    case eof
}

struct Token {
    let kind: TokenKind
    let line: Int
    let column: Int
}

/// Splits a template into tokens with jinja2's whitespace rules as transformers
/// configures them: `trim_blocks` (drop the first newline after a block or
/// comment tag), `lstrip_blocks` (drop spaces and tabs before a block or comment
/// tag that starts its line), and the `-`/`+` modifiers on tags.
struct Lexer {
    private let src: [Unicode.Scalar]
    private var pos = 0
    private var tokens: [Token] = []
    private var lineStarts: [Int] = [0]
    private let trimBlocks: Bool
    private let lstripBlocks: Bool

    init(_ source: String, trimBlocks: Bool = true, lstripBlocks: Bool = true, keepTrailingNewline: Bool = false) {
        // jinja2 normalises "\r\n" and "\r" to "\n" and, without keep_trailing_newline,
        // drops one newline at the very end of the template.
        var scalars: [Unicode.Scalar] = []
        let input = Array(source.unicodeScalars)
        var k = 0
        while k < input.count {
            if input[k] == "\r" {
                scalars.append("\n")
                if k + 1 < input.count && input[k + 1] == "\n" { k += 1 }
            } else {
                scalars.append(input[k])
            }
            k += 1
        }
        if scalars.last == "\n" && !keepTrailingNewline { scalars.removeLast() }
        src = scalars
        for (i, c) in src.enumerated() where c == "\n" { lineStarts.append(i + 1) }
        self.trimBlocks = trimBlocks
        self.lstripBlocks = lstripBlocks
    }

    private func location(_ index: Int) -> (line: Int, column: Int) {
        var lo = 0, hi = lineStarts.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if lineStarts[mid] <= index { lo = mid } else { hi = mid - 1 }
        }
        return (lo + 1, index - lineStarts[lo] + 1)
    }

    private func syntaxError(_ message: String, at index: Int) -> TemplateError {
        let (l, c) = location(index)
        return .syntax(message: message, line: l, column: c)
    }

    private mutating func emit(_ kind: TokenKind, at index: Int) {
        let (l, c) = location(index)
        tokens.append(Token(kind: kind, line: l, column: c))
    }

    private func matches(_ s: String, at i: Int) -> Bool {
        var j = i
        for c in s.unicodeScalars {
            guard j < src.count, src[j] == c else { return false }
            j += 1
        }
        return true
    }

    private static func isSpace(_ c: Unicode.Scalar) -> Bool {
        c == " " || c == "\t" || c == "\n" || c == "\r" || c == "\u{0B}" || c == "\u{0C}"
            || (c.value > 127 && c.properties.isWhitespace)
    }

    /// Finds the next `{{`, `{%` or `{#` at or after `from`.
    private func nextTag(from: Int) -> Int? {
        var i = from
        while i + 1 < src.count {
            if src[i] == "{" && (src[i + 1] == "{" || src[i + 1] == "%" || src[i + 1] == "#") { return i }
            i += 1
        }
        return nil
    }

    mutating func tokenize() throws -> [Token] {
        var lineStarting = true
        while pos < src.count {
            guard let tagStart = nextTag(from: pos) else {
                emit(.text(String(String.UnicodeScalarView(src[pos...]))), at: pos)
                pos = src.count
                break
            }
            var text = Array(src[pos..<tagStart])
            let kind = src[tagStart + 1]
            let modifier: Unicode.Scalar? = tagStart + 2 < src.count && (src[tagStart + 2] == "-" || src[tagStart + 2] == "+")
                ? src[tagStart + 2] : nil
            let isBlockLike = kind == "%" || kind == "#"
            if modifier == "-" {
                while let last = text.last, Lexer.isSpace(last) { text.removeLast() }
            } else if modifier != "+" && lstripBlocks && isBlockLike {
                let lastNewline = text.lastIndex(of: "\n").map { $0 + 1 } ?? 0
                if lastNewline > 0 || lineStarting {
                    let tail = text[lastNewline...]
                    if !tail.isEmpty && tail.allSatisfy({ Lexer.isSpace($0) }) {
                        text.removeSubrange(lastNewline...)
                    }
                }
            }
            if !text.isEmpty { emit(.text(String(String.UnicodeScalarView(text))), at: pos) }
            let bodyStart = tagStart + 2 + (modifier == nil ? 0 : 1)

            if kind == "#" {
                pos = try skipComment(from: bodyStart, opener: tagStart)
            } else if kind == "%", let after = rawBlockEnd(from: bodyStart) {
                pos = try lexRaw(contentStart: after, opener: tagStart)
            } else {
                emit(kind == "{" ? .variableBegin : .blockBegin, at: tagStart)
                pos = try lexExpression(from: bodyStart, block: kind == "%", opener: tagStart)
            }
            lineStarting = pos > 0 && src[pos - 1] == "\n"
        }
        emit(.eof, at: src.count)
        return tokens
    }

    /// After a closing tag: `-` eats all whitespace, a plain block end eats one newline.
    private func skipAfterClose(_ i: Int, minus: Bool, plus: Bool, block: Bool) -> Int {
        var j = i
        if minus {
            while j < src.count, Lexer.isSpace(src[j]) { j += 1 }
        } else if block && !plus && trimBlocks, j < src.count, src[j] == "\n" {
            j += 1
        }
        return j
    }

    private mutating func skipComment(from start: Int, opener: Int) throws -> Int {
        var i = start
        while i + 1 < src.count {
            if src[i] == "#" && src[i + 1] == "}" {
                let minus = i > start && src[i - 1] == "-"
                let plus = i > start && src[i - 1] == "+"
                return skipAfterClose(i + 2, minus: minus, plus: plus, block: true)
            }
            i += 1
        }
        throw syntaxError("comment is never closed (missing '#}')", at: opener)
    }

    /// If the tag body at `start` is `raw %}`, returns the index after its closing tag.
    private func rawBlockEnd(from start: Int) -> Int? {
        var i = start
        while i < src.count, Lexer.isSpace(src[i]) { i += 1 }
        guard matches("raw", at: i) else { return nil }
        i += 3
        while i < src.count, Lexer.isSpace(src[i]) { i += 1 }
        if matches("-%}", at: i) { return skipAfterClose(i + 3, minus: true, plus: false, block: true) }
        if matches("+%}", at: i) { return i + 3 }
        if matches("%}", at: i) { return skipAfterClose(i + 2, minus: false, plus: false, block: true) }
        return nil
    }

    private mutating func lexRaw(contentStart: Int, opener: Int) throws -> Int {
        var i = contentStart
        while let tag = nextTag(from: i) {
            if src[tag + 1] == "%" {
                var j = tag + 2
                let minusOpen = j < src.count && src[j] == "-"
                if j < src.count && (src[j] == "-" || src[j] == "+") { j += 1 }
                while j < src.count, Lexer.isSpace(src[j]) { j += 1 }
                if matches("endraw", at: j) {
                    j += 6
                    while j < src.count, Lexer.isSpace(src[j]) { j += 1 }
                    var minusClose = false
                    if j < src.count && src[j] == "-" { minusClose = true; j += 1 } else if j < src.count && src[j] == "+" { j += 1 }
                    if matches("%}", at: j) {
                        var body = Array(src[contentStart..<tag])
                        if minusOpen { while let l = body.last, Lexer.isSpace(l) { body.removeLast() } }
                        if !body.isEmpty { emit(.text(String(String.UnicodeScalarView(body))), at: contentStart) }
                        return skipAfterClose(j + 2, minus: minusClose, plus: false, block: true)
                    }
                }
            }
            i = tag + 2
        }
        throw syntaxError("raw block is never closed (missing '{% endraw %}')", at: opener)
    }

    private mutating func lexExpression(from start: Int, block: Bool, opener: Int) throws -> Int {
        var i = start
        let close: Unicode.Scalar = block ? "%" : "}"
        while true {
            while i < src.count, Lexer.isSpace(src[i]) { i += 1 }
            guard i < src.count else {
                throw syntaxError("tag is never closed (missing '\(block ? "%}" : "}}")')", at: opener)
            }
            // Closing delimiter, possibly with a whitespace modifier.
            if (src[i] == "-" || src[i] == "+"), i + 2 < src.count, src[i + 1] == close, src[i + 2] == "}" {
                emit(block ? .blockEnd : .variableEnd, at: i)
                return skipAfterClose(i + 3, minus: src[i] == "-", plus: src[i] == "+", block: block)
            }
            if src[i] == close, i + 1 < src.count, src[i + 1] == "}" {
                emit(block ? .blockEnd : .variableEnd, at: i)
                return skipAfterClose(i + 2, minus: false, plus: false, block: block)
            }
            let c = src[i]
            if c == "'" || c == "\"" {
                i = try lexString(at: i)
            } else if c.properties.isAlphabetic || c == "_" {
                var j = i
                while j < src.count, src[j].properties.isAlphabetic || src[j] == "_" || ("0"..."9").contains(src[j]) { j += 1 }
                emit(.name(String(String.UnicodeScalarView(src[i..<j]))), at: i)
                i = j
            } else if ("0"..."9").contains(c) {
                i = try lexNumber(at: i)
            } else {
                let ops = ["//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "(", ")", "[", "]",
                           "{", "}", ",", ".", ":", "|", "=", "<", ">", "!", ";"]
                guard let op = ops.first(where: { matches($0, at: i) }) else {
                    throw syntaxError("unexpected character '\(Character(c))'", at: i)
                }
                emit(.op(op), at: i)
                i += op.unicodeScalars.count
            }
        }
    }

    private mutating func lexNumber(at start: Int) throws -> Int {
        var j = start
        var isFloat = false
        func digits() { while j < src.count, ("0"..."9").contains(src[j]) || src[j] == "_" { j += 1 } }
        digits()
        if j + 1 < src.count, src[j] == ".", ("0"..."9").contains(src[j + 1]) {
            isFloat = true
            j += 1
            digits()
        }
        if j < src.count, src[j] == "e" || src[j] == "E" {
            var k = j + 1
            if k < src.count, src[k] == "+" || src[k] == "-" { k += 1 }
            if k < src.count, ("0"..."9").contains(src[k]) {
                isFloat = true
                j = k
                digits()
            }
        }
        let text = String(String.UnicodeScalarView(src[start..<j])).replacingOccurrences(of: "_", with: "")
        if isFloat {
            guard let d = Double(text) else { throw syntaxError("invalid number '\(text)'", at: start) }
            emit(.float(d), at: start)
        } else {
            guard let n = Int(text) else { throw syntaxError("integer '\(text)' is out of range", at: start) }
            emit(.integer(n), at: start)
        }
        return j
    }

    /// A quoted string with Python escapes (jinja2 decodes them like `unicode_escape`).
    private mutating func lexString(at start: Int) throws -> Int {
        let quote = src[start]
        var j = start + 1
        var out = String.UnicodeScalarView()
        while true {
            guard j < src.count else { throw syntaxError("string literal is never closed", at: start) }
            let c = src[j]
            if c == quote { j += 1; break }
            if c != "\\" { out.append(c); j += 1; continue }
            guard j + 1 < src.count else { throw syntaxError("string literal is never closed", at: start) }
            let e = src[j + 1]
            j += 2
            switch e {
            case "n": out.append("\n")
            case "t": out.append("\t")
            case "r": out.append("\r")
            case "\\": out.append("\\")
            case "'": out.append("'")
            case "\"": out.append("\"")
            case "a": out.append("\u{07}")
            case "b": out.append("\u{08}")
            case "f": out.append("\u{0C}")
            case "v": out.append("\u{0B}")
            case "\n": break
            case "0"..."7":
                var value = e.value - 48
                var n = 1
                while n < 3, j < src.count, ("0"..."7").contains(src[j]) { value = value * 8 + src[j].value - 48; j += 1; n += 1 }
                out.append(Unicode.Scalar(value) ?? "\u{FFFD}")
            case "x", "u", "U":
                let width = e == "x" ? 2 : (e == "u" ? 4 : 8)
                guard j + width <= src.count,
                      let v = UInt32(String(String.UnicodeScalarView(src[j..<j + width])), radix: 16),
                      let s = Unicode.Scalar(v)
                else { throw syntaxError("invalid \\\(Character(e)) escape in string literal", at: j - 2) }
                out.append(s)
                j += width
            default:
                out.append("\\")
                out.append(e)
            }
        }
        emit(.string(String(out)), at: start)
        return j
    }
}
