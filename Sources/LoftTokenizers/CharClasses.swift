import Foundation

// Character classes used by the pre-tokenizer patterns, as the onig engine of
// Hugging Face `tokenizers` sees them: \p{L}, \p{N} by general category, \s as
// the Unicode White_Space property.

@inline(__always) func isLetter(_ c: UInt32) -> Bool {
    if c < 0x80 { return (c | 0x20) &- 0x61 < 26 }
    guard let s = Unicode.Scalar(c) else { return false }
    switch s.properties.generalCategory {
    case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
    default: return false
    }
}

@inline(__always) func isNumber(_ c: UInt32) -> Bool {
    if c < 0x80 { return c &- 0x30 < 10 }
    guard let s = Unicode.Scalar(c) else { return false }
    switch s.properties.generalCategory {
    case .decimalNumber, .letterNumber, .otherNumber: return true
    default: return false
    }
}

@inline(__always) func isSpace(_ c: UInt32) -> Bool {
    if c < 0x80 { return c == 0x20 || (c >= 0x09 && c <= 0x0D) }
    guard let s = Unicode.Scalar(c) else { return false }
    return s.properties.isWhitespace
}

@inline(__always) func isMark(_ c: UInt32) -> Bool {
    if c < 0x300 { return false }
    guard let s = Unicode.Scalar(c) else { return false }
    switch s.properties.generalCategory {
    case .nonspacingMark, .spacingMark, .enclosingMark: return true
    default: return false
    }
}

@inline(__always) func isNewline(_ c: UInt32) -> Bool { c == 0x0A || c == 0x0D }

/// Neither whitespace, letter nor number: `[^\s\p{L}\p{N}]`.
@inline(__always) func isOther(_ c: UInt32) -> Bool { !isSpace(c) && !isLetter(c) && !isNumber(c) }

/// The GPT-2 byte ↔ unicode-character table of byte-level BPE.
enum ByteLevelTable {
    static let byteToChar: [UInt32] = {
        var table = [UInt32](repeating: 0, count: 256)
        var n: UInt32 = 0
        for b in 0..<256 {
            let printable = (33...126).contains(b) || (161...172).contains(b) || (174...255).contains(b)
            if printable { table[b] = UInt32(b) } else { table[b] = 256 + n; n += 1 }
        }
        return table
    }()
    static let charToByte: [UInt32: UInt8] = {
        var d = [UInt32: UInt8]()
        for (b, c) in byteToChar.enumerated() { d[c] = UInt8(b) }
        return d
    }()

    /// The byte-level spelling of raw bytes ("Ġhello" for " hello").
    static func spell<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
        var s = String.UnicodeScalarView()
        for b in bytes { s.append(Unicode.Scalar(byteToChar[Int(b)])!) }
        return String(s)
    }

    /// The raw bytes of a byte-level spelled token, or nil when a character is outside the table.
    static func unspell(_ token: String) -> [UInt8]? {
        var out = [UInt8]()
        out.reserveCapacity(token.utf8.count)
        for u in token.unicodeScalars {
            guard let b = charToByte[u.value] else { return nil }
            out.append(b)
        }
        return out
    }
}

/// A token string compared and hashed by its exact scalars. Swift's `String`
/// equality is canonical equivalence ("é" == "e\u{301}"), which would merge
/// distinct vocabulary entries.
struct TokenKey: Hashable {
    let string: String
    init(_ s: String) { string = s }
    static func == (a: TokenKey, b: TokenKey) -> Bool {
        var x = a.string, y = b.string
        return x.withUTF8 { p in y.withUTF8 { q in p.count == q.count && (p.count == 0 || memcmp(p.baseAddress!, q.baseAddress!, p.count) == 0) } }
    }
    func hash(into h: inout Hasher) {
        var s = string
        s.withUTF8 { h.combine(bytes: UnsafeRawBufferPointer($0)) }
    }
}

typealias Vocab = [TokenKey: Int32]

extension Dictionary where Key == TokenKey {
    @inline(__always) subscript(_ s: String) -> Value? {
        get { self[TokenKey(s)] }
        set { self[TokenKey(s)] = newValue }
    }
}
