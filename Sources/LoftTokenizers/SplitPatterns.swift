// Hand-written matchers for the pre-tokenizer regexes of the supported families.
// Each reproduces leftmost-first alternation with backtracking exactly as the
// regex engines of HF `tokenizers` evaluate these specific patterns; the regex
// strings they stand for are listed in `SplitPattern.init?(regex:)`.

enum SplitPattern: Equatable {
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    case gpt2
    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,k}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    /// (k = 3: Llama 3 / cl100k; k = 1: Qwen2, written `\p{N}`).
    case cl100k(maxDigits: Int)
    /// Qwen3.5: cl100k-style with marks counted as letters:
    /// `(?i:'s|…|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    case qwen35
    /// o200k (GPT-4o, Llama 4) when `contractions`, with `\p{N}{1,3}`; Tekken (Mistral Nemo) without, with `\p{N}`:
    /// `[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|…)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|…)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    case caseSplit(contractions: Bool, maxDigits: Int)

    static let gpt2Regex = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
    static let llama3Regex = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let qwen2Regex = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    static let qwen35Regex = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let o200kRegex = #"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let tekkenRegex = #"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    init?(regex: String) {
        switch regex {
        case Self.qwen35Regex: self = .qwen35
        case Self.o200kRegex: self = .caseSplit(contractions: true, maxDigits: 3)
        case Self.tekkenRegex: self = .caseSplit(contractions: false, maxDigits: 1)
        case Self.gpt2Regex: self = .gpt2
        case Self.llama3Regex: self = .cl100k(maxDigits: 3)
        case Self.qwen2Regex: self = .cl100k(maxDigits: 1)
        // A few spellings seen in the wild for the same patterns.
        case #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#:
            self = .cl100k(maxDigits: 1)
        default: return nil
        }
    }

    /// Appends the end index of each match covering `c[lo..<hi]` (the patterns match every character).
    func split(_ c: UnsafeBufferPointer<UInt32>, _ lo: Int, _ hi: Int, into ends: inout [Int]) {
        var p = lo
        switch self {
        case .gpt2:
            while p < hi { p = Self.gpt2Match(c, p, hi); ends.append(p) }
        case .cl100k(let k):
            while p < hi { p = Self.cl100kMatch(c, p, hi, k); ends.append(p) }
        case .qwen35:
            while p < hi { p = Self.cl100kMatch(c, p, hi, 1, marks: true); ends.append(p) }
        case .caseSplit(let contractions, let k):
            while p < hi { p = Self.caseSplitMatch(c, p, hi, contractions, k); ends.append(p) }
        }
    }

    @inline(__always) static func run(_ c: UnsafeBufferPointer<UInt32>, _ p: Int, _ hi: Int, _ pred: (UInt32) -> Bool) -> Int {
        var q = p
        while q < hi && pred(c[q]) { q += 1 }
        return q
    }

    /// Length of a contraction at p ('s 't 're 've 'm 'll 'd), 0 if none.
    @inline(__always) static func contraction(_ c: UnsafeBufferPointer<UInt32>, _ p: Int, _ hi: Int, caseless: Bool) -> Int {
        guard c[p] == 0x27, p + 1 < hi else { return 0 }
        func fold(_ x: UInt32) -> UInt32 {
            if !caseless { return x }
            if x == 0x17F { return 0x73 }  // ſ folds to s
            if x >= 0x41 && x <= 0x5A { return x | 0x20 }
            return x
        }
        let a = fold(c[p + 1])
        if a == 0x73 || a == 0x74 || a == 0x6D || a == 0x64 { return 2 }  // s t m d
        if p + 2 < hi {
            let b = fold(c[p + 2])
            if (a == 0x72 && b == 0x65) || (a == 0x76 && b == 0x65) || (a == 0x6C && b == 0x6C) { return 3 }  // re ve ll
        }
        return 0
    }

    /// End of the whitespace alternatives `\s+(?!\S)|\s+` for a whitespace run starting at p.
    @inline(__always) static func spaceTail(_ c: UnsafeBufferPointer<UInt32>, _ p: Int, _ hi: Int) -> Int {
        let j = run(c, p, hi, isSpace)
        if j == hi { return j }
        if j - 1 > p { return j - 1 }
        return j
    }

    static func gpt2Match(_ c: UnsafeBufferPointer<UInt32>, _ p: Int, _ hi: Int) -> Int {
        let ch = c[p]
        let k = contraction(c, p, hi, caseless: false)
        if k > 0 { return p + k }
        var start = p
        if ch == 0x20 && p + 1 < hi && !isSpace(c[p + 1]) { start = p + 1 }
        let x = c[start]
        if isLetter(x) { return run(c, start + 1, hi, isLetter) }
        if isNumber(x) { return run(c, start + 1, hi, isNumber) }
        if !isSpace(x) { return run(c, start + 1, hi, isOther) }
        return spaceTail(c, p, hi)
    }

    static func cl100kMatch(_ c: UnsafeBufferPointer<UInt32>, _ p: Int, _ hi: Int, _ maxDigits: Int, marks: Bool = false) -> Int {
        let ch = c[p]
        let k = contraction(c, p, hi, caseless: true)
        if k > 0 { return p + k }
        // [^\r\n\p{L}\p{N}]?\p{L}+  (Qwen3.5: [\p{L}\p{M}]+)
        let letter: (UInt32) -> Bool = marks ? { isLetter($0) || isMark($0) } : isLetter
        if letter(ch) { return run(c, p + 1, hi, letter) }
        let num = isNumber(ch)
        if !num && !isNewline(ch) && p + 1 < hi && letter(c[p + 1]) { return run(c, p + 2, hi, letter) }
        // \p{N}{1,k}
        if num {
            var q = p + 1
            while q < hi && q - p < maxDigits && isNumber(c[q]) { q += 1 }
            return q
        }
        // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
        let other: (UInt32) -> Bool = marks ? { isOther($0) && !isMark($0) } : isOther
        var start = -1
        if other(ch) { start = p } else if ch == 0x20 && p + 1 < hi && other(c[p + 1]) { start = p + 1 }
        if start >= 0 {
            let q = run(c, start + 1, hi, other)
            return run(c, q, hi, isNewline)
        }
        // ch is whitespace. \s*[\r\n]+
        let j = run(c, p, hi, isSpace)
        var last = j - 1
        while last >= p && !isNewline(c[last]) { last -= 1 }
        if last >= p { return last + 1 }
        return spaceTail(c, p, hi)
    }
}

extension SplitPattern {
    /// `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]`
    @inline(__always) static func isUpperish(_ c: UInt32) -> Bool {
        if c < 0x80 { return c &- 0x41 < 26 }
        guard let s = Unicode.Scalar(c) else { return false }
        switch s.properties.generalCategory {
        case .uppercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter, .nonspacingMark, .spacingMark, .enclosingMark: return true
        default: return false
        }
    }
    /// `[\p{Ll}\p{Lm}\p{Lo}\p{M}]`
    @inline(__always) static func isLowerish(_ c: UInt32) -> Bool {
        if c < 0x80 { return c &- 0x61 < 26 }
        guard let s = Unicode.Scalar(c) else { return false }
        switch s.properties.generalCategory {
        case .lowercaseLetter, .modifierLetter, .otherLetter, .nonspacingMark, .spacingMark, .enclosingMark: return true
        default: return false
        }
    }

    /// End of `U*L+` from q (U = upper-ish, L = lower-ish, overlapping), with backtracking; nil if no match.
    static func upperStarLowerPlus(_ c: UnsafeBufferPointer<UInt32>, _ q: Int, _ hi: Int) -> Int? {
        let e = run(c, q, hi, isUpperish)
        if e < hi && isLowerish(c[e]) { return run(c, e + 1, hi, isLowerish) }
        // Give back upper-ish characters until one can start L+.
        var k = e - 1
        while k >= q && !isLowerish(c[k]) { k -= 1 }
        return k >= q ? k + 1 : nil
    }

    /// End of `U+L*` from q; nil if no match.
    static func upperPlusLowerStar(_ c: UnsafeBufferPointer<UInt32>, _ q: Int, _ hi: Int) -> Int? {
        guard q < hi && isUpperish(c[q]) else { return nil }
        let e = run(c, q + 1, hi, isUpperish)
        return run(c, e, hi, isLowerish)
    }

    static func caseSplitMatch(_ c: UnsafeBufferPointer<UInt32>, _ p: Int, _ hi: Int, _ contractions: Bool, _ maxDigits: Int) -> Int {
        let ch = c[p]
        let prefixOK = !isNewline(ch) && !isLetter(ch) && !isNumber(ch)
        func withContraction(_ e: Int) -> Int {
            guard contractions, e < hi else { return e }
            return e + contraction(c, e, hi, caseless: true)
        }
        for word in [upperStarLowerPlus, upperPlusLowerStar] {
            if prefixOK && p + 1 < hi, let e = word(c, p + 1, hi) { return withContraction(e) }
            if let e = word(c, p, hi) { return withContraction(e) }
        }
        if isNumber(ch) {
            var q = p + 1
            while q < hi && q - p < maxDigits && isNumber(c[q]) { q += 1 }
            return q
        }
        // ' ?[^\s\p{L}\p{N}]+[\r\n/]*'
        var start = -1
        if isOther(ch) { start = p } else if ch == 0x20 && p + 1 < hi && isOther(c[p + 1]) { start = p + 1 }
        if start >= 0 {
            let q = run(c, start + 1, hi, isOther)
            return run(c, q, hi) { isNewline($0) || $0 == 0x2F }
        }
        let j = run(c, p, hi, isSpace)
        var last = j - 1
        while last >= p && !isNewline(c[last]) { last -= 1 }
        if last >= p { return last + 1 }
        return spaceTail(c, p, hi)
    }
}
