import Foundation

/// Everything that can go wrong loading or rendering a chat template. Messages
/// are meant for a person: they say where (line, column, file) and what to do.
public enum TemplateError: Error, Equatable, CustomStringConvertible {
    /// The template text does not parse.
    case syntax(message: String, line: Int, column: Int)
    /// The template called `raise_exception(msg)`; `message` is the template's own text.
    case raised(message: String)
    /// The template parsed but failed while rendering (unknown filter, bad operand…).
    case runtime(message: String, line: Int)
    /// No chat template could be found in the given source.
    case missingTemplate(filesRead: [String], hint: String)
    /// The source could not be read or has the wrong shape.
    case invalidSource(message: String)

    public var description: String {
        switch self {
        case .syntax(let m, let line, let col):
            return "chat template syntax error at line \(line), column \(col): \(m)"
        case .raised(let m):
            return "chat template raised an exception: \(m)"
        case .runtime(let m, let line):
            return "chat template error at line \(line): \(m)"
        case .missingTemplate(let files, let hint):
            return "no chat template found (read: \(files.joined(separator: ", "))). \(hint)"
        case .invalidSource(let m):
            return m
        }
    }
}

/// Errors thrown while evaluating, before the statement's line is attached.
struct EvalError: Error {
    let message: String
}

/// `raise_exception` from the template, carried up through the interpreter unchanged.
struct RaisedError: Error {
    let message: String
}
