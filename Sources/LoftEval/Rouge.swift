import Foundation

/// ROUGE as Google's `rouge-score` package computes it (`RougeScorer` with
/// its default tokenizer and `use_stemmer=False`, the default lm-eval and
/// Hugging Face `evaluate` use): lowercase, every run of characters other
/// than a-z and 0-9 separates tokens; ROUGE-N counts clipped n-gram overlaps,
/// ROUGE-L is the longest common subsequence, ROUGE-Lsum the summary-level
/// union LCS over sentences split on newlines. Each score is the F-measure.
public enum Rouge {
    public struct Score: Equatable, Sendable {
        public var precision: Double
        public var recall: Double
        public var fmeasure: Double
        static let zero = Score(precision: 0, recall: 0, fmeasure: 0)
        init(precision: Double, recall: Double) {
            self.precision = precision; self.recall = recall
            fmeasure = precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0
        }
        init(precision: Double, recall: Double, fmeasure: Double) {
            self.precision = precision; self.recall = recall; self.fmeasure = fmeasure
        }
    }

    /// rouge-score's `tokenize.tokenize(text, None)`.
    public static func tokenize(_ text: String) -> [String] {
        var tokens: [String] = []
        var current = String.UnicodeScalarView()
        for s in PythonText.lower(text).unicodeScalars {
            if ("a"..."z").contains(s) || ("0"..."9").contains(s) {
                current.append(s)
            } else if !current.isEmpty {
                tokens.append(String(current)); current = String.UnicodeScalarView()
            }
        }
        if !current.isEmpty { tokens.append(String(current)) }
        return tokens
    }

    /// ROUGE-N (n ≥ 1) of `prediction` against `target`.
    public static func n(_ n: Int, target: String, prediction: String) -> Score {
        ngrams(tokenize(target), tokenize(prediction), n: n)
    }

    static func ngrams(_ target: [String], _ prediction: [String], n: Int) -> Score {
        func counts(_ tokens: [String]) -> [ArraySlice<String>: Int] {
            var c: [ArraySlice<String>: Int] = [:]
            if tokens.count >= n { for i in 0 ... tokens.count - n { c[tokens[i ..< i + n], default: 0] += 1 } }
            return c
        }
        let t = counts(target), p = counts(prediction)
        var overlap = 0
        for (gram, count) in t { overlap += min(count, p[gram] ?? 0) }
        let tTotal = t.values.reduce(0, +), pTotal = p.values.reduce(0, +)
        return Score(precision: Double(overlap) / Double(max(pTotal, 1)), recall: Double(overlap) / Double(max(tTotal, 1)))
    }

    /// ROUGE-L: longest common subsequence of the token lists.
    public static func l(target: String, prediction: String) -> Score {
        lcsScore(tokenize(target), tokenize(prediction))
    }

    static func lcsScore(_ target: [String], _ prediction: [String]) -> Score {
        if target.isEmpty || prediction.isEmpty { return .zero }
        let length = lcsTable(target, prediction).last!.last!
        return Score(precision: Double(length) / Double(prediction.count), recall: Double(length) / Double(target.count))
    }

    static func lcsTable(_ ref: [String], _ can: [String]) -> [[Int]] {
        var t = [[Int]](repeating: [Int](repeating: 0, count: can.count + 1), count: ref.count + 1)
        for i in 1 ..< ref.count + 1 {
            for j in 1 ..< can.count + 1 {
                t[i][j] = ref[i - 1] == can[j - 1] ? t[i - 1][j - 1] + 1 : max(t[i - 1][j], t[i][j - 1])
            }
        }
        return t
    }

    /// The reference indices of one LCS, read back as rouge-score's `_backtrack_norec` does.
    static func lcsIndices(_ ref: [String], _ can: [String]) -> [Int] {
        let t = lcsTable(ref, can)
        var i = ref.count, j = can.count
        var indices: [Int] = []
        while i > 0 && j > 0 {
            if ref[i - 1] == can[j - 1] {
                indices.append(i - 1); i -= 1; j -= 1
            } else if t[i][j - 1] > t[i - 1][j] {
                j -= 1
            } else {
                i -= 1
            }
        }
        return indices.reversed()
    }

    /// ROUGE-Lsum: sentences are the non-empty lines of each text.
    public static func lsum(target: String, prediction: String) -> Score {
        func sentences(_ text: String) -> [[String]] {
            // Split on U+000A scalars as Python's `split("\n")` does (a Swift
            // Character would keep "\r\n" together).
            text.unicodeScalars.split(separator: "\n", omittingEmptySubsequences: true).map { tokenize(String(String.UnicodeScalarView($0))) }
        }
        let refs = sentences(target), cans = sentences(prediction)
        if refs.isEmpty || cans.isEmpty { return .zero }
        let m = refs.reduce(0) { $0 + $1.count }, n = cans.reduce(0) { $0 + $1.count }
        if m == 0 || n == 0 { return .zero }
        var refCounts: [String: Int] = [:], canCounts: [String: Int] = [:]
        for s in refs { for t in s { refCounts[t, default: 0] += 1 } }
        for s in cans { for t in s { canCounts[t, default: 0] += 1 } }
        var hits = 0
        for r in refs {
            var union = Set<Int>()
            for c in cans { union.formUnion(lcsIndices(r, c)) }
            for i in union.sorted() {
                let token = r[i]
                if canCounts[token, default: 0] > 0 && refCounts[token, default: 0] > 0 {
                    hits += 1; canCounts[token]! -= 1; refCounts[token]! -= 1
                }
            }
        }
        return Score(precision: Double(hits) / Double(n), recall: Double(hits) / Double(m))
    }
}
