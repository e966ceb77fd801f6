import Foundation

/// A Jinja template over arbitrary variables with jinja2's default
/// `Environment` settings (no trim_blocks or lstrip_blocks) and
/// `keep_trailing_newline=True`: how lm-evaluation-harness renders a task's
/// `doc_to_text`, `doc_to_target` and `doc_to_choice` over a dataset row.
public final class TextTemplate: @unchecked Sendable {
    public let source: String
    private let body: [Statement]

    public init(_ source: String) throws {
        self.source = source
        body = try Parser.parse(source, trimBlocks: false, lstripBlocks: false, keepTrailingNewline: true)
    }

    /// `template.render(**variables)`.
    public func render(_ variables: [String: JinjaValue]) throws -> String {
        let globals = Frame(parent: nil)
        Globals.install(into: globals, clock: { Date() })
        for (k, v) in variables { globals.variables[k] = Value(v) }
        return try Interpreter(clock: { Date() }).render(body, globals: globals)
    }
}
