import Foundation

/// The config keys whose values differ between runs (nested keys dotted).
public enum ConfigDiff {
    public struct Difference: Sendable, Equatable {
        public var key: String
        /// One value per run, as compact JSON ("-" where a run lacks the key).
        public var values: [String]
    }

    public static func differing(_ configsJSON: [String]) -> [Difference] {
        let flat = configsJSON.map { text -> [String: String] in
            guard let o = try? JSONSerialization.jsonObject(with: Data(text.utf8)) else { return [:] }
            var out: [String: String] = [:]
            flatten(o, prefix: "", into: &out)
            return out
        }
        let keys = Set(flat.flatMap(\.keys)).sorted()
        return keys.compactMap { k in
            let values = flat.map { $0[k] ?? "-" }
            return Set(values).count > 1 ? Difference(key: k, values: values) : nil
        }
    }

    /// Keys as a config file spells them ("learningRate" → "learning_rate"):
    /// registries hold the resolved config as Swift encodes it.
    static func snakeCase(_ key: String) -> String {
        var out = ""
        var previous: Character?
        for c in key {
            if c.isUppercase, let p = previous, p.isLowercase || p.isNumber { out += "_" }
            out += c.lowercased()
            previous = c
        }
        return out
    }

    static func flatten(_ value: Any, prefix: String, into out: inout [String: String]) {
        if let d = value as? [String: Any] {
            for (k, v) in d { flatten(v, prefix: prefix.isEmpty ? snakeCase(k) : prefix + "." + snakeCase(k), into: &out) }
        } else if JSONSerialization.isValidJSONObject([value]),
                  let data = try? JSONSerialization.data(withJSONObject: [value], options: [.sortedKeys]) {
            // Encoded inside an array (fragments are not allowed at the top), then unwrapped.
            out[prefix] = String(String(decoding: data, as: UTF8.self).dropFirst().dropLast())
        }
    }
}
