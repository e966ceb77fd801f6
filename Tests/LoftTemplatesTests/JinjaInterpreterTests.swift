import Foundation
import XCTest
@testable import LoftTemplates

/// Small templates, one interpreter feature each (whitespace control, loop
/// variables, macros, namespace, filters, tests, errors), compared with jinja2
/// rendering in transformers' environment (Fixtures/jinja_cases.json).
final class JinjaInterpreterTests: XCTestCase {
    func testFeatureCasesMatchJinja2() throws {
        let fixture = try FixtureSupport.load("jinja_cases.json")
        guard let cases = fixture["cases"]?.arrayValue else { return XCTFail("no cases") }
        XCTAssertGreaterThan(cases.count, 40)
        var failures: [String] = []
        for c in cases {
            guard let name = c["name"]?.stringValue, let source = c["template"]?.stringValue else { continue }
            var context: [String: JinjaValue] = [:]
            if case .object(let o)? = c["context"] { for (k, v) in o.pairs { context[k] = v } }
            let result = Result { () throws -> (text: String, generationRanges: [Range<Int>]) in
                let t = try ChatTemplate(source)
                t.now = { FixtureSupport.fixedNow }
                return try t.render(context: context)
            }
            if let expected = c["expected"]?.stringValue {
                switch result {
                case .success(let r):
                    if r.text != expected {
                        failures.append("\(name): \(FixtureSupport.firstDifference(expected: expected, actual: r.text))")
                    }
                    if let ranges = c["generation"]?.arrayValue {
                        let expectedRanges = ranges.compactMap { pair -> Range<Int>? in
                            guard case .int(let a)? = pair.arrayValue?.first, case .int(let b)? = pair.arrayValue?.last else { return nil }
                            return a..<b
                        }
                        if expectedRanges != r.generationRanges { failures.append("\(name): generation ranges \(r.generationRanges) != \(expectedRanges)") }
                    }
                case .failure(let e): failures.append("\(name): threw \(e)")
                }
                continue
            }
            guard case .failure(let error) = result else {
                failures.append("\(name): rendered, but jinja2 fails with \(c["error"]?.stringValue ?? "?")")
                continue
            }
            switch c["error_kind"]?.stringValue {
            case "raise":
                if error as? TemplateError != .raised(message: c["error"]?.stringValue ?? "") { failures.append("\(name): got \(error)") }
            case "syntax":
                // jinja2 reports unknown filters at compile time; we report them when evaluated.
                if name == "unknown_filter" { break }
                guard case .syntax(_, let line, _)? = error as? TemplateError else { failures.append("\(name): expected a syntax error, got \(error)"); break }
                if case .int(let expectedLine)? = c["line"], expectedLine != line {
                    failures.append("\(name): syntax error on line \(line), jinja2 says line \(expectedLine)")
                }
            default:
                break
            }
        }
        for f in failures { print("MISMATCH " + f) }
        XCTAssertEqual(failures, [])
    }

    func testRaiseExceptionCarriesTheTemplatesMessage() throws {
        let t = try ChatTemplate("{{ raise_exception('Only user and assistant roles are supported!') }}")
        XCTAssertThrowsError(try t.render(messages: [])) { error in
            XCTAssertEqual(error as? TemplateError, .raised(message: "Only user and assistant roles are supported!"))
            XCTAssertTrue("\(error)".contains("Only user and assistant roles are supported!"))
        }
    }

    func testSyntaxErrorNamesLineAndColumn() {
        XCTAssertThrowsError(try ChatTemplate("ok\n{% for x in %}")) { error in
            guard case .syntax(_, let line, let column)? = error as? TemplateError else { return XCTFail("\(error)") }
            XCTAssertEqual(line, 2)
            XCTAssertEqual(column, 13)
            XCTAssertTrue("\(error)".contains("line 2, column 13"), "\(error)")
        }
    }

    func testRuntimeErrorNamesLine() throws {
        let t = try ChatTemplate("a\nb\n{{ 'x' + 1 }}")
        XCTAssertThrowsError(try t.render(messages: [])) { error in
            XCTAssertEqual(error as? TemplateError, .runtime(message: "can only concatenate str (not \"int\") to str", line: 3))
        }
    }

    func testMalformedTemplatesNeverCrash() {
        let inputs = ["{{", "{%", "{#", "{% if %}", "{{ a[ }}", "{{ (1, }}", "{% for %}", "{% set %}", "{% macro %}",
                      "{{ a | }}", "{{ 'unterminated }}", "{% endif %}", "{{ 1 ++ }}", "{% raw %}x", "}}", "{{ a.0.1.x }}",
                      "{{ x is }}", "{% call %}{% endcall %}", "{{ {'a' 1} }}", "{{ [1,2][::0] }}", "{{ range(10**12) }}",
                      "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}",
                      "{{ -(-9223372036854775807 - 1) }}", "{{ (-9223372036854775807 - 1) // -1 }}", "{{ (-9223372036854775807 - 1) % -1 }}",
                      "{{ 1e300 | int }}", "{{ (-9223372036854775807 - 1) | abs }}", "{{ 'ab' * 9223372036854775807 }}",
                      "{{ range(-9223372036854775807, 9223372036854775807) }}", "{{ 9223372036854775807 + 1 }}",
                      String(repeating: "(", count: 5000) + "1" + String(repeating: ")", count: 5000),
                      "{{ " + String(repeating: "not ", count: 5000) + "x }}", "{{ " + String(repeating: "-", count: 5000) + "1 }}",
                      String(repeating: "{% if true %}", count: 3000), "{{ x" + String(repeating: "[0]", count: 5000) + " }}",
                      "{{ 'a' | " + String(repeating: "upper | ", count: 3000) + "lower }}"]
        for input in inputs {
            // Either a parse error or a render error; never a crash.
            if let t = try? ChatTemplate(input) { _ = try? t.render(messages: []) }
        }
    }
}

/// Real templates with random damage (characters deleted, duplicated or swapped):
/// each must either fail with a TemplateError or render; the process must survive.
final class DamagedTemplateTests: XCTestCase {
    func testDamagedRealTemplatesFailCleanly() throws {
        let dir = TestPaths.fixtures.appendingPathComponent("templates")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".jinja") }.sorted()
        XCTAssertGreaterThan(files.count, 30)
        let messages: [JinjaValue] = [["role": "system", "content": "s"], ["role": "user", "content": "u"],
                                      ["role": "assistant", "content": "a"], ["role": "user", "content": "v"]]
        var state: UInt64 = 0x9E3779B97F4A7C15
        func next(_ bound: Int) -> Int {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Int((state >> 33) % UInt64(max(bound, 1)))
        }
        var parsed = 0, failed = 0
        for file in files {
            let original = Array(try String(contentsOf: dir.appendingPathComponent(file), encoding: .utf8).unicodeScalars)
            for _ in 0..<20 {
                var s = original
                for _ in 0..<(1 + next(4)) where !s.isEmpty {
                    let i = next(s.count)
                    switch next(3) {
                    case 0: s.remove(at: i)
                    case 1: s.insert(s[i], at: i)
                    default: s.swapAt(i, next(s.count))
                    }
                }
                do {
                    let t = try ChatTemplate(PyString.make(s), bosToken: "<s>", eosToken: "</s>")
                    parsed += 1
                    _ = try t.render(messages: messages, addGenerationPrompt: true)
                } catch is TemplateError {
                    failed += 1
                } catch {
                    XCTFail("\(file): non-template error \(error)")
                }
            }
        }
        XCTAssertGreaterThan(parsed, 0)
        XCTAssertGreaterThan(failed, 0)
    }
}
