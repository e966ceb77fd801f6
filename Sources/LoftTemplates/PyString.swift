import Foundation

/// Python `str` operations on Unicode scalars (Python indexes code points, while
/// Swift's String works on grapheme clusters, which would differ on "\r\n" or emoji).
enum PyString {
    static func scalars(_ s: String) -> [Unicode.Scalar] { Array(s.unicodeScalars) }
    static func make<S: Sequence>(_ scalars: S) -> String where S.Element == Unicode.Scalar {
        var v = String.UnicodeScalarView()
        v.append(contentsOf: scalars)
        return String(v)
    }

    /// Python's str.isspace for one code point.
    static func isSpace(_ c: Unicode.Scalar) -> Bool {
        switch c.value {
        case 0x09...0x0D, 0x1C...0x20, 0x85, 0xA0: return true
        default: return c.value > 127 && c.properties.isWhitespace
        }
    }

    static func find(_ haystack: String, _ needle: String, from: Int = 0) -> Int? {
        let h = scalars(haystack), n = scalars(needle)
        return find(h, n, from: from)
    }

    static func find(_ h: [Unicode.Scalar], _ n: [Unicode.Scalar], from: Int = 0) -> Int? {
        if n.isEmpty { return from <= h.count ? from : nil }
        guard h.count >= n.count, from <= h.count - n.count else { return nil }
        var i = max(0, from)
        while i <= h.count - n.count {
            if h[i] == n[0] {
                var j = 1
                while j < n.count && h[i + j] == n[j] { j += 1 }
                if j == n.count { return i }
            }
            i += 1
        }
        return nil
    }

    static func rfind(_ h: [Unicode.Scalar], _ n: [Unicode.Scalar]) -> Int? {
        guard h.count >= n.count else { return nil }
        var i = h.count - n.count
        while i >= 0 {
            if Array(h[i..<i + n.count]) == n { return i }
            i -= 1
        }
        return nil
    }

    static func strip(_ s: String, _ chars: String?, leading: Bool, trailing: Bool) -> String {
        let a = scalars(s)
        let set = chars.map { Set($0.unicodeScalars) }
        func strippable(_ c: Unicode.Scalar) -> Bool { set.map { $0.contains(c) } ?? isSpace(c) }
        var lo = 0, hi = a.count
        if leading { while lo < hi && strippable(a[lo]) { lo += 1 } }
        if trailing { while hi > lo && strippable(a[hi - 1]) { hi -= 1 } }
        return make(a[lo..<hi])
    }

    static func split(_ s: String, _ sep: String?, maxsplit: Int = -1) -> [String] {
        let a = scalars(s)
        var parts: [String] = []
        guard let sep else {
            // Runs of whitespace separate; no empty strings.
            var i = 0
            var splits = 0
            while i < a.count {
                while i < a.count && isSpace(a[i]) { i += 1 }
                if i == a.count { break }
                if maxsplit >= 0 && splits == maxsplit {
                    // Python keeps the remainder as is, trailing whitespace included.
                    parts.append(make(a[i...]))
                    return parts
                }
                var j = i
                while j < a.count && !isSpace(a[j]) { j += 1 }
                parts.append(make(a[i..<j]))
                splits += 1
                i = j
            }
            return parts
        }
        let n = scalars(sep)
        var start = 0
        var splits = 0
        while maxsplit < 0 || splits < maxsplit, let idx = find(a, n, from: start) {
            parts.append(make(a[start..<idx]))
            start = idx + n.count
            splits += 1
        }
        parts.append(make(a[start...]))
        return parts
    }

    static func replace(_ s: String, _ old: String, _ new: String, count: Int = -1) -> String {
        let a = scalars(s), o = scalars(old), n = scalars(new)
        var out: [Unicode.Scalar] = []
        var i = 0
        var done = 0
        if o.isEmpty {
            // Python inserts `new` between every character.
            for c in a {
                if count < 0 || done < count { out += n; done += 1 }
                out.append(c)
            }
            if count < 0 || done < count { out += n }
            return make(out)
        }
        while i < a.count {
            if (count < 0 || done < count), let idx = find(a, o, from: i) {
                out += a[i..<idx]
                out += n
                i = idx + o.count
                done += 1
            } else {
                out += a[i...]
                break
            }
        }
        return make(out)
    }

    static func isCased(_ c: Unicode.Scalar) -> Bool { c.properties.isCased }

    /// Python's lower-casing of the character at `i`: full case mapping, plus the
    /// final-sigma rule (Σ becomes ς at the end of a word).
    private static func lowerScalar(_ a: [Unicode.Scalar], _ i: Int) -> String {
        let c = a[i]
        guard c == "\u{03A3}" else { return c.properties.lowercaseMapping }
        var j = i - 1
        while j >= 0 && a[j].properties.isCaseIgnorable { j -= 1 }
        let precededByCased = j >= 0 && isCased(a[j])
        var k = i + 1
        while k < a.count && a[k].properties.isCaseIgnorable { k += 1 }
        let followedByCased = k < a.count && isCased(a[k])
        return precededByCased && !followedByCased ? "\u{03C2}" : "\u{03C3}"
    }

    /// Python's str.lower().
    static func lower(_ s: String) -> String {
        let a = scalars(s)
        var out = ""
        for i in a.indices { out += lowerScalar(a, i) }
        return out
    }

    /// Python's str.upper().
    static func upper(_ s: String) -> String {
        var out = ""
        for c in s.unicodeScalars { out += c.properties.uppercaseMapping }
        return out
    }

    /// Python's str.title(): a cased character after an uncased one starts a word.
    static func title(_ s: String) -> String {
        let a = scalars(s)
        var out = ""
        var previousCased = false
        for i in a.indices {
            out += previousCased ? lowerScalar(a, i) : a[i].properties.titlecaseMapping
            previousCased = isCased(a[i])
        }
        return out
    }

    /// Python's str.capitalize(): first character title-cased, the rest lower-cased.
    static func capitalize(_ s: String) -> String {
        let a = scalars(s)
        guard let first = a.first else { return s }
        var out = first.properties.titlecaseMapping
        for i in a.indices.dropFirst() { out += lowerScalar(a, i) }
        return out
    }

    /// Python's str.isalpha() for one character: a letter category.
    static func isAlpha(_ c: Unicode.Scalar) -> Bool {
        switch c.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
        default: return false
        }
    }

    /// A character of Python's `\w`: letters, numbers, underscore.
    static func isWord(_ c: Unicode.Scalar) -> Bool {
        c == "_" || isAlpha(c) || c.properties.numericType != nil
    }

    /// Python's str.islower(): some cased character, and every cased one lower-case.
    static func isLower(_ s: String) -> Bool {
        let cased = s.unicodeScalars.filter(isCased)
        return !cased.isEmpty && cased.allSatisfy { $0.properties.isLowercase }
    }

    /// Python's str.isupper(): some cased character, and every cased one upper-case.
    static func isUpper(_ s: String) -> Bool {
        let cased = s.unicodeScalars.filter(isCased)
        return !cased.isEmpty && cased.allSatisfy { $0.properties.isUppercase }
    }

    /// Python's str.isprintable() for one character (repr escapes the others).
    static func isPrintable(_ c: Unicode.Scalar) -> Bool {
        if c == " " { return true }
        switch c.properties.generalCategory {
        case .control, .format, .surrogate, .privateUse, .unassigned, .lineSeparator, .paragraphSeparator, .spaceSeparator:
            return false
        default: return true
        }
    }

    static func length(_ s: String) -> Int { s.unicodeScalars.count }
}
