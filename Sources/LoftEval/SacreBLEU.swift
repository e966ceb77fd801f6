import Foundation

/// BLEU and chrF as sacreBLEU 2.x computes them, with its defaults: BLEU with
/// the `13a` tokenizer, `exp` smoothing and n-grams up to 4; chrF with
/// character 6-grams, β = 2, whitespace removed. Both are corpus metrics:
/// each item contributes sufficient statistics, and the score of a set of
/// items (the whole set, or a bootstrap resample) is computed from their sums,
/// as `sacrebleu.corpus_bleu` / `corpus_chrf` and sacreBLEU's paired bootstrap do.
public enum SacreBLEU {
    public static let maxNgramOrder = 4

    // MARK: tokenizer 13a

    /// sacreBLEU's `Tokenizer13a` (mteval-v13a), applied after `rstrip()`.
    public static func tokenize13a(_ input: String) -> String {
        // Scalar-wise replacements, as Python's str.replace (a Swift Character
        // would join "\r\n" or a combining mark onto its neighbour).
        var line = Array(input.unicodeScalars)
        line = replace(line, "<skipped>", "")
        line = replace(line, "-\n", "")
        line = replace(line, "\n", " ")
        if line.contains("&") {
            line = replace(line, "&quot;", "\"")
            line = replace(line, "&amp;", "&")
            line = replace(line, "&lt;", "<")
            line = replace(line, "&gt;", ">")
        }
        var s: [Unicode.Scalar] = [" "] + line + [" "]
        // ([\{-\~\[-\` -\&\(-\+\:-\@\/]) → " \1 "
        var spaced: [Unicode.Scalar] = []
        spaced.reserveCapacity(s.count * 2)
        for c in s {
            switch c.value {
            case 0x7B...0x7E, 0x5B...0x60, 0x20...0x26, 0x28...0x2B, 0x3A...0x40, 0x2F:
                spaced.append(" "); spaced.append(c); spaced.append(" ")
            default: spaced.append(c)
            }
        }
        s = spaced
        let digit: (Unicode.Scalar) -> Bool = { ("0"..."9").contains($0) }
        let period: (Unicode.Scalar) -> Bool = { $0 == "." || $0 == "," }
        // ([^0-9])([\.,]) → "\1 \2 "
        s = substitutePairs(s, { !digit($0) }, period) { [$0, " ", $1, " "] }
        // ([\.,])([^0-9]) → " \1 \2"
        s = substitutePairs(s, period, { !digit($0) }) { [" ", $0, " ", $1] }
        // ([0-9])(-) → "\1 \2 "
        s = substitutePairs(s, digit, { $0 == "-" }) { [$0, " ", $1, " "] }
        return PythonText.split(s.string).joined(separator: " ")
    }

    /// `str.replace(old, new)` over scalars: leftmost, non-overlapping.
    static func replace(_ s: [Unicode.Scalar], _ old: String, _ new: String) -> [Unicode.Scalar] {
        let o = Array(old.unicodeScalars), n = Array(new.unicodeScalars)
        guard s.count >= o.count else { return s }
        var out: [Unicode.Scalar] = []
        var i = 0
        while i < s.count {
            if i + o.count <= s.count && s[i] == o[0] && Array(s[i ..< i + o.count]) == o {
                out.append(contentsOf: n); i += o.count
            } else {
                out.append(s[i]); i += 1
            }
        }
        return out
    }

    /// `re.sub` of a two-character pattern: leftmost, non-overlapping matches.
    static func substitutePairs(_ s: [Unicode.Scalar], _ first: (Unicode.Scalar) -> Bool, _ second: (Unicode.Scalar) -> Bool,
                                _ replace: (Unicode.Scalar, Unicode.Scalar) -> [Unicode.Scalar]) -> [Unicode.Scalar] {
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(s.count + s.count / 2)
        var i = 0
        while i < s.count {
            if i + 1 < s.count && first(s[i]) && second(s[i + 1]) {
                out.append(contentsOf: replace(s[i], s[i + 1])); i += 2
            } else {
                out.append(s[i]); i += 1
            }
        }
        return out
    }

    // MARK: BLEU

    /// One segment's BLEU statistics: [hyp_len, ref_len, correct_1..4, total_1..4].
    public static func bleuStatistics(hypothesis: String, references: [String]) -> [Double] {
        // Tokens compare by code points, as Python's do (Swift's String ==
        // would equate canonically equivalent spellings).
        func ngrams(_ text: String) -> (counts: [ArraySlice<[Unicode.Scalar]>: Int], length: Int) {
            let tokens = PythonText.split(tokenize13a(PythonText.rstrip(text))).map { Array($0.unicodeScalars) }
            var c: [ArraySlice<[Unicode.Scalar]>: Int] = [:]
            for n in 1 ... maxNgramOrder where tokens.count >= n {
                for i in 0 ... tokens.count - n { c[tokens[i ..< i + n], default: 0] += 1 }
            }
            return (c, tokens.count)
        }
        var refNgrams: [ArraySlice<[Unicode.Scalar]>: Int] = [:]
        var refLengths: [Int] = []
        for r in references {
            let (c, len) = ngrams(r)
            refLengths.append(len)
            for (g, k) in c { refNgrams[g] = max(refNgrams[g] ?? 0, k) }
        }
        let (hyp, hypLength) = ngrams(hypothesis)
        // The closest reference length, the shorter one on a tie.
        var closestDiff = -1, closest = -1
        for len in refLengths {
            let diff = abs(hypLength - len)
            if closestDiff == -1 || diff < closestDiff { closestDiff = diff; closest = len }
            else if diff == closestDiff && len < closest { closest = len }
        }
        var correct = [Double](repeating: 0, count: maxNgramOrder), total = correct
        for (g, k) in hyp {
            total[g.count - 1] += Double(k)
            if let r = refNgrams[g] { correct[g.count - 1] += Double(min(k, r)) }
        }
        return [Double(hypLength), Double(closest)] + correct + total
    }

    /// BLEU (0-100) from summed statistics, `exp` smoothing.
    /// `effectiveOrder` as `sentence_bleu` uses it (orders without n-grams are skipped).
    public static func bleu(statistics stats: [Double], effectiveOrder: Bool = false) -> Double {
        let sysLen = stats[0], refLen = stats[1]
        let correct = Array(stats[2 ..< 2 + maxNgramOrder]), total = Array(stats[2 + maxNgramOrder ..< 2 + 2 * maxNgramOrder])
        var bp = 1.0
        if sysLen < refLen { bp = sysLen > 0 ? exp(1 - refLen / sysLen) : 0 }
        if !correct.contains(where: { $0 != 0 }) { return 0 }
        var precisions = [Double](repeating: 0, count: maxNgramOrder)
        var smooth = 1.0
        var order = maxNgramOrder
        for n in 1 ... maxNgramOrder {
            if total[n - 1] == 0 { break }
            if effectiveOrder { order = n }
            if correct[n - 1] == 0 {
                smooth *= 2
                precisions[n - 1] = 100 / (smooth * total[n - 1])
            } else {
                precisions[n - 1] = 100 * correct[n - 1] / total[n - 1]
            }
        }
        var sum = 0.0
        for p in precisions[0 ..< order] { sum += p == 0 ? -9_999_999_999 : log(p) }
        return bp * exp(sum / Double(order))
    }

    // MARK: chrF

    public static let chrfCharOrder = 6
    public static let chrfBeta = 2.0

    /// One segment's chrF statistics: [hyp, ref, match] per character order,
    /// for the reference with the best chrF (the first on a tie).
    public static func chrfStatistics(hypothesis: String, references: [String]) -> [Double] {
        func ngrams(_ text: String) -> [[[Unicode.Scalar]: Int]] {
            let chars = Array(PythonText.split(text).joined().unicodeScalars)
            return (1 ... chrfCharOrder).map { n in
                var c: [[Unicode.Scalar]: Int] = [:]
                if chars.count >= n { for i in 0 ... chars.count - n { c[Array(chars[i ..< i + n]), default: 0] += 1 } }
                return c
            }
        }
        let hyp = ngrams(hypothesis)
        var best: [Double] = [], bestF = -1.0
        for r in references {
            let ref = ngrams(r)
            var stats: [Double] = []
            for (h, rr) in zip(hyp, ref) {
                var match = 0, hypCount = 0
                for (g, k) in h { hypCount += k; if let m = rr[g] { match += min(k, m) } }
                stats += [Double(rr.isEmpty ? 0 : hypCount), Double(rr.values.reduce(0, +)), Double(match)]
            }
            let f = chrf(statistics: stats)
            if f > bestF { bestF = f; best = stats }
        }
        return best
    }

    /// chrF (0-100) from summed statistics (sacreBLEU's effective-order average).
    public static func chrf(statistics stats: [Double]) -> Double {
        let factor = chrfBeta * chrfBeta
        var avgPrec = 0.0, avgRec = 0.0, effective = 0
        for i in 0 ..< stats.count / 3 {
            let nHyp = stats[3 * i], nRef = stats[3 * i + 1], nMatch = stats[3 * i + 2]
            let prec = nHyp > 0 ? nMatch / nHyp : 1e-16
            let rec = nRef > 0 ? nMatch / nRef : 1e-16
            if nHyp > 0 && nRef > 0 { avgPrec += prec; avgRec += rec; effective += 1 }
        }
        if effective == 0 { avgPrec = 0; avgRec = 0 } else { avgPrec /= Double(effective); avgRec /= Double(effective) }
        if avgPrec + avgRec != 0 {
            return 100 * (1 + factor) * avgPrec * avgRec / (factor * avgPrec + avgRec)
        }
        return 0
    }
}
