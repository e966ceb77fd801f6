import Foundation

/// The official SQuAD v1.1 evaluation script's answer normalisation, exact
/// match and token F1 (`evaluate-v1.1.py`), each the maximum over references.
public enum Squad {
    static let punctuation = Set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~".unicodeScalars)

    /// lower → remove punctuation → replace the words a/an/the by a space →
    /// collapse whitespace.
    public static func normalize(_ text: String) -> String {
        let noPunct = PythonText.lower(text).unicodeScalars.filter { !punctuation.contains($0) }
        // re.sub(r'\b(a|an|the)\b', ' ', text): whole runs of word characters.
        var out: [Unicode.Scalar] = []
        var i = 0
        let s = Array(noPunct)
        while i < s.count {
            if PythonText.isWordCharacter(s[i]) {
                var j = i
                while j < s.count && PythonText.isWordCharacter(s[j]) { j += 1 }
                let word = Array(s[i ..< j])
                if word == ["a"] || word == ["a", "n"] || word == ["t", "h", "e"] { out.append(" ") } else { out += word }
                i = j
            } else {
                out.append(s[i]); i += 1
            }
        }
        return PythonText.split(out.string).joined(separator: " ")
    }

    public static func exactMatch(prediction: String, references: [String]) -> Double {
        let p = Array(normalize(prediction).unicodeScalars)
        return references.contains { Array(normalize($0).unicodeScalars) == p } ? 1 : 0
    }

    public static func f1(prediction: String, references: [String]) -> Double {
        references.map { f1(prediction, $0) }.max() ?? 0
    }

    static func f1(_ prediction: String, _ reference: String) -> Double {
        let p = PythonText.split(normalize(prediction)).map { Array($0.unicodeScalars) }
        let g = PythonText.split(normalize(reference)).map { Array($0.unicodeScalars) }
        var counts: [[Unicode.Scalar]: Int] = [:]
        for t in g { counts[t, default: 0] += 1 }
        var same = 0
        for t in p { if let c = counts[t], c > 0 { same += 1; counts[t] = c - 1 } }
        if same == 0 { return 0 }
        let precision = Double(same) / Double(p.count), recall = Double(same) / Double(g.count)
        return 2 * precision * recall / (precision + recall)
    }
}
