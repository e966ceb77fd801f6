import Foundation

/// Text being tokenized: Unicode scalars, each with the range of original
/// scalars (Python-style character offsets) it came from.
struct AlignedText {
    var chars: [UInt32] = []
    var starts: [Int32] = []
    var ends: [Int32] = []

    init() {}
    init(chars: [UInt32], base: Int) {
        self.chars = chars
        starts = (0..<chars.count).map { Int32(base + $0) }
        ends = (0..<chars.count).map { Int32(base + $0 + 1) }
    }
    var count: Int { chars.count }

    mutating func append(_ c: UInt32, _ s: Int32, _ e: Int32) { chars.append(c); starts.append(s); ends.append(e) }

    func slice(_ r: Range<Int>) -> AlignedText {
        var t = AlignedText()
        t.chars = Array(chars[r]); t.starts = Array(starts[r]); t.ends = Array(ends[r])
        return t
    }

    var string: String {
        var s = String.UnicodeScalarView()
        for c in chars { s.append(Unicode.Scalar(c)!) }
        return String(s)
    }
}

// MARK: Normalizers

indirect enum Normalizer {
    case nfc, nfkc, nfd, nfkd, lowercase
    case prepend(String)
    case replace(String, String)
    case strip(left: Bool, right: Bool)
    case sequence([Normalizer])

    func apply(_ t: AlignedText) -> AlignedText {
        switch self {
        case .sequence(let list):
            var x = t
            for n in list { x = n.apply(x) }
            return x
        case .nfc: return Self.unicodeForm(t) { $0.precomposedStringWithCanonicalMapping }
        case .nfkc: return Self.unicodeForm(t) { $0.precomposedStringWithCompatibilityMapping }
        case .nfd: return Self.unicodeForm(t) { $0.decomposedStringWithCanonicalMapping }
        case .nfkd: return Self.unicodeForm(t) { $0.decomposedStringWithCompatibilityMapping }
        case .lowercase:
            var out = AlignedText()
            for i in 0..<t.count {
                let c = t.chars[i]
                if c < 0x80 { out.append((c >= 0x41 && c <= 0x5A) ? c | 0x20 : c, t.starts[i], t.ends[i]); continue }
                for u in String(Unicode.Scalar(c)!).lowercased().unicodeScalars { out.append(u.value, t.starts[i], t.ends[i]) }
            }
            return out
        case .prepend(let p):
            guard t.count > 0 else { return t }
            var out = AlignedText()
            for u in p.unicodeScalars { out.append(u.value, t.starts[0], t.ends[0]) }
            out.chars += t.chars; out.starts += t.starts; out.ends += t.ends
            return out
        case .replace(let pattern, let content):
            let pat = pattern.unicodeScalars.map(\.value)
            let rep = content.unicodeScalars.map(\.value)
            guard !pat.isEmpty else { return t }
            var out = AlignedText()
            var i = 0
            while i < t.count {
                if i + pat.count <= t.count && t.chars[i] == pat[0] && Array(t.chars[i..<(i + pat.count)]) == pat {
                    let s = t.starts[i], e = t.ends[i + pat.count - 1]
                    for r in rep { out.append(r, s, e) }
                    i += pat.count
                } else {
                    out.append(t.chars[i], t.starts[i], t.ends[i]); i += 1
                }
            }
            return out
        case .strip(let left, let right):
            var lo = 0, hi = t.count
            if left { while lo < hi && isSpace(t.chars[lo]) { lo += 1 } }
            if right { while hi > lo && isSpace(t.chars[hi - 1]) { hi -= 1 } }
            return t.slice(lo..<hi)
        }
    }

    /// Applies a Unicode normalization form chunk by chunk. Chunks start at each
    /// ASCII character (which never combines with what precedes it), so the result
    /// equals normalizing the whole text, while offsets stay local to each chunk.
    static func unicodeForm(_ t: AlignedText, _ f: (String) -> String) -> AlignedText {
        if t.chars.allSatisfy({ $0 < 0x80 }) { return t }
        var out = AlignedText()
        var i = 0
        while i < t.count {
            var j = i + 1
            while j < t.count && t.chars[j] >= 0x80 { j += 1 }
            if j == i + 1 && t.chars[i] < 0x80 {
                out.append(t.chars[i], t.starts[i], t.ends[i]); i = j; continue
            }
            var s = String.UnicodeScalarView()
            for k in i..<j { s.append(Unicode.Scalar(t.chars[k])!) }
            let n = f(String(s)).unicodeScalars.map(\.value)
            if n.count == j - i {
                for k in 0..<n.count { out.append(n[k], t.starts[i + k], t.ends[i + k]) }
            } else {
                for c in n { out.append(c, t.starts[i], t.ends[j - 1]) }
            }
            i = j
        }
        return out
    }
}

// MARK: Pre-tokenizers

enum PrependScheme { case always, first, never }

indirect enum PreTokenizer {
    case split(SplitPattern)
    case digits(individual: Bool)
    /// Byte-level: optional prefix space and GPT-2 split; the byte mapping itself happens at the model's input.
    case byteLevel(addPrefixSpace: Bool, useRegex: Bool)
    case metaspace(replacement: UInt32, prepend: PrependScheme, split: Bool)
    case whitespaceSplit
    case sequence([PreTokenizer])

    var usesByteLevel: Bool {
        switch self {
        case .byteLevel: return true
        case .sequence(let l): return l.contains { $0.usesByteLevel }
        default: return false
        }
    }

    /// Splits each piece (a range of `text`) further; may rewrite `text` (Metaspace, prefix space).
    func apply(_ text: inout AlignedText, _ pieces: inout [Range<Int>]) {
        switch self {
        case .sequence(let l):
            for p in l { p.apply(&text, &pieces) }
        case .split(let pattern):
            var out = [Range<Int>](); out.reserveCapacity(pieces.count * 2)
            var ends = [Int]()
            text.chars.withUnsafeBufferPointer { c in
                for r in pieces {
                    ends.removeAll(keepingCapacity: true)
                    pattern.split(c, r.lowerBound, r.upperBound, into: &ends)
                    var s = r.lowerBound
                    for e in ends { out.append(s..<e); s = e }
                }
            }
            pieces = out
        case .digits(let individual):
            var out = [Range<Int>]()
            for r in pieces {
                var s = r.lowerBound
                var i = r.lowerBound
                while i < r.upperBound {
                    if isNumber(text.chars[i]) {
                        if i > s { out.append(s..<i) }
                        var j = i + 1
                        if !individual { while j < r.upperBound && isNumber(text.chars[j]) { j += 1 } }
                        out.append(i..<j); s = j; i = j
                    } else { i += 1 }
                }
                if s < r.upperBound { out.append(s..<r.upperBound) }
            }
            pieces = out
        case .byteLevel(let addPrefixSpace, let useRegex):
            if addPrefixSpace {
                rebuild(&text, &pieces) { piece, first, out in
                    if piece.count > 0 && piece.chars[0] != 0x20 { out.append(0x20, piece.starts[0], piece.ends[0]) }
                }
            }
            if useRegex { PreTokenizer.split(.gpt2).apply(&text, &pieces) }
        case .metaspace(let rep, let scheme, let split):
            rebuild(&text, &pieces) { piece, atOrigin, out in
                let startsWithRep = piece.count > 0 && (piece.chars[0] == rep || piece.chars[0] == 0x20)
                let prepend: Bool
                switch scheme {
                case .always: prepend = !startsWithRep
                case .first: prepend = !startsWithRep && atOrigin
                case .never: prepend = false
                }
                if prepend && piece.count > 0 { out.append(rep, piece.starts[0], piece.ends[0]) }
            } transform: { $0 == 0x20 ? rep : $0 }
            if split {
                var out = [Range<Int>]()
                for r in pieces {
                    var s = r.lowerBound
                    for i in r where text.chars[i] == rep && i > s { out.append(s..<i); s = i }
                    if s < r.upperBound { out.append(s..<r.upperBound) }
                }
                pieces = out
            }
        case .whitespaceSplit:
            var out = [Range<Int>]()
            for r in pieces {
                var i = r.lowerBound
                while i < r.upperBound {
                    while i < r.upperBound && isSpace(text.chars[i]) { i += 1 }
                    var j = i
                    while j < r.upperBound && !isSpace(text.chars[j]) { j += 1 }
                    if j > i { out.append(i..<j) }
                    i = j
                }
            }
            pieces = out
        }
    }

    /// Rewrites every piece: `prefix` may add characters before it, `transform` maps each character.
    private func rebuild(_ text: inout AlignedText, _ pieces: inout [Range<Int>],
                         prefix: (AlignedText, Bool, inout AlignedText) -> Void,
                         transform: ((UInt32) -> UInt32)? = nil) {
        var out = AlignedText()
        var newPieces = [Range<Int>]()
        for r in pieces {
            let piece = text.slice(r)
            let start = out.count
            prefix(piece, piece.count > 0 && piece.starts[0] == 0, &out)
            for i in 0..<piece.count {
                out.append(transform?(piece.chars[i]) ?? piece.chars[i], piece.starts[i], piece.ends[i])
            }
            newPieces.append(start..<out.count)
        }
        text = out
        pieces = newPieces
    }
}

// MARK: Decoders

indirect enum Decoder {
    case byteLevel
    case metaspace(replacement: Character, prepend: PrependScheme)
    case byteFallback
    case fuse
    case strip(content: Character, start: Int, stop: Int)
    case replace(String, String)
    case sequence([Decoder])

    func decode(_ tokens: [String]) -> [String] {
        switch self {
        case .sequence(let l):
            var t = tokens
            for d in l { t = d.decode(t) }
            return t
        case .byteLevel:
            var bytes = [UInt8]()
            for t in tokens {
                if let b = ByteLevelTable.unspell(t) { bytes += b } else { bytes += Array(t.utf8) }
            }
            return [String(decoding: bytes, as: UTF8.self)]
        case .metaspace(let rep, let scheme):
            return tokens.enumerated().map { i, t in
                var s = Self.replaceScalars(t, String(rep), " ")
                if i == 0 && scheme != .never && s.unicodeScalars.first == " " { s = String(s.unicodeScalars.dropFirst()) }
                return s
            }
        case .byteFallback:
            var out = [String]()
            var pending = [UInt8]()
            func flush() {
                guard !pending.isEmpty else { return }
                if let s = String(validating: pending, as: UTF8.self) { out.append(s) }
                else { out.append(String(repeating: "\u{FFFD}", count: pending.count)) }
                pending.removeAll()
            }
            for t in tokens {
                if let b = Self.byteToken(t) { pending.append(b) } else { flush(); out.append(t) }
            }
            flush()
            return out
        case .fuse:
            return [tokens.joined()]
        case .strip(let content, let start, let stop):
            let c = content.unicodeScalars.first!
            return tokens.map { t in
                let chars = Array(t.unicodeScalars)
                var lo = 0, hi = chars.count
                while lo < min(start, chars.count) && chars[lo] == c { lo += 1 }
                var k = 0
                while k < stop && hi > lo && chars[hi - 1] == c { hi -= 1; k += 1 }
                var v = String.UnicodeScalarView(); v.append(contentsOf: chars[lo..<hi])
                return String(v)
            }
        case .replace(let pattern, let content):
            return tokens.map { Self.replaceScalars($0, pattern, content) }
        }
    }

    /// Replaces exact scalar sequences (Foundation's replacingOccurrences compares canonically).
    static func replaceScalars(_ s: String, _ pattern: String, _ with: String) -> String {
        let p = Array(pattern.unicodeScalars)
        guard let first = p.first else { return s }
        let u = Array(s.unicodeScalars)
        if !u.contains(first) { return s }
        var out = String.UnicodeScalarView()
        var i = 0
        while i < u.count {
            if u[i] == first && i + p.count <= u.count && Array(u[i..<(i + p.count)]) == p {
                out.append(contentsOf: with.unicodeScalars); i += p.count
            } else { out.append(u[i]); i += 1 }
        }
        return String(out)
    }

    /// The byte of a `<0xNN>` token.
    static func byteToken(_ t: String) -> UInt8? {
        let u = Array(t.utf8)
        guard u.count == 6, u[0] == 0x3C, u[1] == 0x30, u[2] == 0x78, u[5] == 0x3E else { return nil }
        func hex(_ c: UInt8) -> UInt8? {
            switch c {
            case 0x30...0x39: return c - 0x30
            case 0x41...0x46: return c - 0x41 + 10
            case 0x61...0x66: return c - 0x61 + 10
            default: return nil
            }
        }
        guard let h = hex(u[3]), let l = hex(u[4]) else { return nil }
        return h << 4 | l
    }
}

// MARK: Added tokens

public struct AddedToken: Sendable, Equatable {
    public var content: String
    public var id: Int
    public var special: Bool
    public var lstrip = false
    public var rstrip = false
    public var singleWord = false
    public var normalized = false

    public init(content: String, id: Int, special: Bool, lstrip: Bool = false, rstrip: Bool = false, singleWord: Bool = false, normalized: Bool = false) {
        self.content = content; self.id = id; self.special = special
        self.lstrip = lstrip; self.rstrip = rstrip; self.singleWord = singleWord; self.normalized = normalized
    }
}

/// Finds added tokens in text, leftmost-longest, as `tokenizers`' added vocabulary does.
struct AddedTokenMatcher {
    let tokens: [AddedToken]
    private var byFirst: [UInt32: [(chars: [UInt32], index: Int)]] = [:]
    /// Whether some token starts with this character (BMP only; others go to the dictionary).
    private var firstBMP = [Bool](repeating: false, count: 0x10000)

    init(_ tokens: [AddedToken]) {
        self.tokens = tokens
        for (i, t) in tokens.enumerated() {
            let c = t.content.unicodeScalars.map(\.value)
            guard let f = c.first else { continue }
            byFirst[f, default: []].append((c, i))
            if f < 0x10000 { firstBMP[Int(f)] = true }
        }
        for k in byFirst.keys { byFirst[k]!.sort { $0.chars.count > $1.chars.count } }
    }
    var isEmpty: Bool { byFirst.isEmpty }

    /// (range in chars incl. stripped whitespace, token index) for each match in `c[lo..<hi]`.
    func matches(_ c: [UInt32], _ lo: Int, _ hi: Int) -> [(Range<Int>, Int)] {
        var out = [(Range<Int>, Int)]()
        guard !byFirst.isEmpty else { return out }
        var p = lo
        var floor = lo
        while p < hi {
            let ch = c[p]
            if ch < 0x10000 && !firstBMP[Int(ch)] { p += 1; continue }
            guard let cands = byFirst[ch] else { p += 1; continue }
            var found: (Int, Int)? = nil
            for (chars, idx) in cands where p + chars.count <= hi {
                var ok = true
                for k in 1..<max(chars.count, 1) where c[p + k] != chars[k] { ok = false; break }
                if !ok { continue }
                let t = tokens[idx]
                if t.singleWord {
                    let e = p + chars.count
                    let before = p > lo ? c[p - 1] : 0x20
                    let after = e < hi ? c[e] : 0x20
                    if Self.isWordChar(before) || Self.isWordChar(after) { continue }
                }
                found = (chars.count, idx); break
            }
            guard let (len, idx) = found else { p += 1; continue }
            var s = p, e = p + len
            let t = tokens[idx]
            if t.lstrip { while s > floor && isSpace(c[s - 1]) { s -= 1 } }
            if t.rstrip { while e < hi && isSpace(c[e]) { e += 1 } }
            out.append((s..<e, idx))
            p = e; floor = e
        }
        return out
    }

    static func isWordChar(_ c: UInt32) -> Bool { c == 0x5F || isLetter(c) || isNumber(c) }
}
