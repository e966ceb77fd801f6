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

    static let gpt2Regex = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
    static let llama3Regex = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let qwen2Regex = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    init?(regex: String) {
        switch regex {
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

    static func cl100kMatch(_ c: UnsafeBufferPointer<UInt32>, _ p: Int, _ hi: Int, _ maxDigits: Int) -> Int {
        let ch = c[p]
        let k = contraction(c, p, hi, caseless: true)
        if k > 0 { return p + k }
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if isLetter(ch) { return run(c, p + 1, hi, isLetter) }
        let num = isNumber(ch)
        if !num && !isNewline(ch) && p + 1 < hi && isLetter(c[p + 1]) { return run(c, p + 2, hi, isLetter) }
        // \p{N}{1,k}
        if num {
            var q = p + 1
            while q < hi && q - p < maxDigits && isNumber(c[q]) { q += 1 }
            return q
        }
        // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
        var start = -1
        if isOther(ch) { start = p } else if ch == 0x20 && p + 1 < hi && isOther(c[p + 1]) { start = p + 1 }
        if start >= 0 {
            let q = run(c, start + 1, hi, isOther)
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
