import Foundation

// The reference metrics are Python code; their tokenizers lean on Python's
// notion of whitespace (str.split(), re's \s) and word characters (re's \w).
// These helpers reproduce exactly those definitions over Unicode scalars, so
// a metric splits text where its package does.
enum PythonText {
    /// `str.isspace()`: Unicode White_Space plus the ASCII separators 0x1C-0x1F.
    static func isSpace(_ s: Unicode.Scalar) -> Bool {
        switch s.value {
        case 0x09...0x0D, 0x1C...0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000:
            return true
        default:
            return false
        }
    }

    /// re's `\w` on str patterns: `str.isalnum()` or underscore.
    static func isWordCharacter(_ s: Unicode.Scalar) -> Bool {
        if s == "_" { return true }
        switch s.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            return true
        default:
            return s.properties.numericType != nil
        }
    }

    /// `str.split()` with no separator: runs of whitespace separate, no empty pieces.
    static func split(_ text: String) -> [String] {
        var out: [String] = []
        var current = String.UnicodeScalarView()
        for s in text.unicodeScalars {
            if isSpace(s) {
                if !current.isEmpty { out.append(String(current)); current = String.UnicodeScalarView() }
            } else {
                current.append(s)
            }
        }
        if !current.isEmpty { out.append(String(current)) }
        return out
    }

    /// `str.rstrip()` with no argument.
    static func rstrip(_ text: String) -> String {
        var scalars = Array(text.unicodeScalars)
        while let last = scalars.last, isSpace(last) { scalars.removeLast() }
        var view = String.UnicodeScalarView(); view.append(contentsOf: scalars)
        return String(view)
    }

    /// `str.strip()` with no argument.
    static func strip(_ text: String) -> String {
        var scalars = Array(text.unicodeScalars)
        while let last = scalars.last, isSpace(last) { scalars.removeLast() }
        let start = scalars.firstIndex { !isSpace($0) } ?? scalars.count
        var view = String.UnicodeScalarView(); view.append(contentsOf: scalars[start...])
        return String(view)
    }

    /// `str.lower()` (full Unicode case mapping, as Swift's `lowercased()`).
    static func lower(_ text: String) -> String { text.lowercased() }
}

extension Array where Element == Unicode.Scalar {
    var string: String { var v = String.UnicodeScalarView(); v.append(contentsOf: self); return String(v) }
}
