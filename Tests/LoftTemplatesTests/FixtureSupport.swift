import Foundation
import XCTest
@testable import LoftTemplates

/// Shared helpers for the fixture-driven tests.
enum FixtureSupport {
    /// The wall-clock time the fixture script pins `strftime_now` to (local time, naive).
    static let fixedNow: Date = {
        var c = DateComponents()
        c.year = 2024; c.month = 7; c.day = 26; c.hour = 10; c.minute = 30; c.second = 0
        return Calendar.current.date(from: c) ?? Date(timeIntervalSince1970: 0)
    }()

    static func load(_ name: String) throws -> JinjaValue {
        try JSONReader.parse(contentsOf: TestPaths.fixtures.appendingPathComponent(name))
    }

    static func visible(_ s: Substring) -> String {
        s.replacingOccurrences(of: "\n", with: "⏎").replacingOccurrences(of: "\t", with: "⇥")
    }

    /// Where two strings first differ, with a little context, for readable failures.
    static func firstDifference(expected: String, actual: String) -> String {
        let e = Array(expected.unicodeScalars), a = Array(actual.unicodeScalars)
        var i = 0
        while i < e.count && i < a.count && e[i] == a[i] { i += 1 }
        let line = e[0..<min(i, e.count)].filter { $0 == "\n" }.count + 1
        func window(_ s: [Unicode.Scalar]) -> String {
            let lo = max(0, i - 40), hi = min(s.count, i + 40)
            var v = String.UnicodeScalarView()
            v.append(contentsOf: s[lo..<hi])
            return visible(Substring(String(v)))
        }
        return "first difference at character \(i) (line \(line)); expected length \(e.count), actual \(a.count)\n"
            + "  expected: …\(window(e))…\n  actual:   …\(window(a))…"
    }
}
