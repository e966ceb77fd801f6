import Foundation
import LoftFormats

extension Tokenizer {
    /// A Hugging Face `tokenizer.json`, with `tokenizer_config.json` (chat template, special
    /// token names) and `special_tokens_map.json` beside it when present.
    static func fromTokenizerJSON(path: String) throws -> Tokenizer {
        guard let data = FileManager.default.contents(atPath: path) else { throw FormatError(path, "cannot read the file") }
        guard let root = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw FormatError(path, "not a JSON object; expected a Hugging Face tokenizer.json")
        }
        guard let model = root["model"] as? [String: Any] else { throw FormatError(path, "no \"model\" object") }
        let type = model["type"] as? String ?? "BPE"
        guard type == "BPE" else { throw FormatError(path, "model.type \(type) is not supported; only BPE") }
        guard let vocabAny = model["vocab"] as? [String: Any] else { throw FormatError(path, "model.vocab is missing or not an object") }
        var vocab = Vocab(minimumCapacity: vocabAny.count)
        // Keys as spelled (`JSONParser.entries`), not through the dictionary above, which
        // merges canonically equal spellings (Gemma's "//" and "\u{FEFF}//"); the
        // dictionary is the fallback.
        let entries: [(String, Int)] = (try? JSONParser.entries(at: ["model", "vocab"], in: data))
            .flatMap { $0 }.map { $0.map { ($0.key, $0.value.int ?? -1) } }
            ?? vocabAny.map { ($0.key, ($0.value as? NSNumber)?.intValue ?? -1) }
        for (k, n) in entries {
            guard n >= 0, n < maxVocabulary else {
                throw FormatError(path, "model.vocab[\"\(k)\"] is not an id in 0..<\(maxVocabulary)")
            }
            if vocab[k] == nil { vocab[k] = Int32(n) }
        }
        var pairs = [(String, String)]()
        for (i, m) in ((model["merges"] as? [Any]) ?? []).enumerated() {
            if let s = m as? String {
                let parts = s.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false)
                guard parts.count == 2 else { throw FormatError(path, "model.merges[\(i)] \"\(s)\" is not \"left right\"") }
                pairs.append((String(parts[0]), String(parts[1])))
            } else if let a = m as? [String], a.count == 2 {
                pairs.append((a[0], a[1]))
            } else {
                throw FormatError(path, "model.merges[\(i)] is neither \"a b\" nor [\"a\", \"b\"]")
            }
        }
        if let p = model["continuing_subword_prefix"] as? String, !p.isEmpty {
            throw FormatError(path, "model.continuing_subword_prefix is not supported")
        }
        if let p = model["end_of_word_suffix"] as? String, !p.isEmpty {
            throw FormatError(path, "model.end_of_word_suffix is not supported")
        }
        var parts = Parts(vocab: vocab, merges: BPEModel.mergeTable(pairs, vocab: vocab), source: path)
        parts.byteFallback = model["byte_fallback"] as? Bool ?? false
        parts.fuseUnk = model["fuse_unk"] as? Bool ?? false
        parts.ignoreMerges = model["ignore_merges"] as? Bool ?? false
        if let u = model["unk_token"] as? String { parts.unkID = vocab[u] }
        parts.normalizer = try (root["normalizer"] as? [String: Any]).map { try parseNormalizer($0, path) }
        parts.preTokenizer = try (root["pre_tokenizer"] as? [String: Any]).map { try parsePreTokenizer($0, path) }
        parts.decoder = try (root["decoder"] as? [String: Any]).map { try parseDecoder($0, path) }
        for (i, a) in ((root["added_tokens"] as? [[String: Any]]) ?? []).enumerated() {
            guard let content = a["content"] as? String, let id = (a["id"] as? NSNumber)?.intValue, id >= 0, id < maxVocabulary else {
                throw FormatError(path, "added_tokens[\(i)] needs \"content\" and an \"id\" in 0..<\(maxVocabulary)")
            }
            parts.added.append(AddedToken(content: content, id: id, special: a["special"] as? Bool ?? false,
                                          lstrip: a["lstrip"] as? Bool ?? false, rstrip: a["rstrip"] as? Bool ?? false,
                                          singleWord: a["single_word"] as? Bool ?? false, normalized: a["normalized"] as? Bool ?? false))
        }
        func idOf(_ s: String) -> Int? { parts.added.first { $0.content.utf8.elementsEqual(s.utf8) }?.id ?? vocab[s].map(Int.init) }
        if let post = root["post_processor"] as? [String: Any] {
            let (pre, suf) = try parsePostProcessor(post, path, idOf)
            parts.prefixIDs = pre; parts.suffixIDs = suf
        }
        // tokenizer_config.json / special_tokens_map.json beside it.
        let dir = URL(fileURLWithPath: path).deletingLastPathComponent()
        func readJSON(_ name: String) -> [String: Any]? {
            guard let d = FileManager.default.contents(atPath: dir.appendingPathComponent(name).path) else { return nil }
            return (try? JSONSerialization.jsonObject(with: d)) as? [String: Any]
        }
        func tokenName(_ v: Any?) -> String? {
            if let s = v as? String { return s }
            if let d = v as? [String: Any] { return d["content"] as? String }
            return nil
        }
        let config = readJSON("tokenizer_config.json") ?? [:]
        let map = readJSON("special_tokens_map.json") ?? [:]
        parts.bos = tokenName(config["bos_token"]) ?? tokenName(map["bos_token"])
        parts.eos = tokenName(config["eos_token"]) ?? tokenName(map["eos_token"])
        parts.pad = tokenName(config["pad_token"]) ?? tokenName(map["pad_token"])
        parts.unk = tokenName(config["unk_token"]) ?? tokenName(map["unk_token"])
        if let t = config["chat_template"] as? String {
            parts.chatTemplate = t
        } else if let list = config["chat_template"] as? [[String: Any]] {
            parts.chatTemplate = (list.first { $0["name"] as? String == "default" } ?? list.first)?["template"] as? String
        } else if let d = FileManager.default.contents(atPath: dir.appendingPathComponent("chat_template.jinja").path) {
            parts.chatTemplate = String(decoding: d, as: UTF8.self)
        }
        // Like `tokenizers` (and transformers 5), only the post-processor adds BOS/EOS;
        // tokenizer_config.json's add_bos_token is not consulted.
        return Tokenizer(parts)
    }

    static func patternString(_ d: [String: Any]?, _ what: String, _ path: String) throws -> (String, isRegex: Bool) {
        if let s = d?["String"] as? String { return (s, false) }
        if let r = d?["Regex"] as? String { return (r, true) }
        throw FormatError(path, "\(what).pattern must be {\"String\": …} or {\"Regex\": …}")
    }

    static func parseNormalizer(_ d: [String: Any], _ path: String) throws -> Normalizer {
        let type = d["type"] as? String ?? ""
        switch type {
        case "NFC": return .nfc
        case "NFKC": return .nfkc
        case "NFD": return .nfd
        case "NFKD": return .nfkd
        case "Lowercase": return .lowercase
        case "Prepend": return .prepend(d["prepend"] as? String ?? "")
        case "Strip": return .strip(left: d["strip_left"] as? Bool ?? true, right: d["strip_right"] as? Bool ?? true)
        case "Replace":
            let (p, isRegex) = try patternString(d["pattern"] as? [String: Any], "normalizer Replace", path)
            if isRegex && p != " " { throw FormatError(path, "normalizer Replace with regex \(p) is not supported; only string patterns") }
            return .replace(p, d["content"] as? String ?? "")
        case "Sequence":
            return .sequence(try ((d["normalizers"] as? [[String: Any]]) ?? []).map { try parseNormalizer($0, path) })
        default:
            throw FormatError(path, "normalizer type \(type) is not supported (NFC, NFKC, NFD, NFKD, Lowercase, Prepend, Replace, Strip, Sequence)")
        }
    }

    static func prependScheme(_ d: [String: Any]) -> PrependScheme {
        if let s = d["prepend_scheme"] as? String { return s == "always" ? .always : s == "first" ? .first : .never }
        return (d["add_prefix_space"] as? Bool ?? true) ? .always : .never
    }

    static func parsePreTokenizer(_ d: [String: Any], _ path: String) throws -> PreTokenizer {
        let type = d["type"] as? String ?? ""
        switch type {
        case "ByteLevel":
            return .byteLevel(addPrefixSpace: d["add_prefix_space"] as? Bool ?? true, useRegex: d["use_regex"] as? Bool ?? true)
        case "Digits": return .digits(individual: d["individual_digits"] as? Bool ?? false)
        case "WhitespaceSplit": return .whitespaceSplit
        case "Metaspace":
            let rep = (d["replacement"] as? String)?.unicodeScalars.first?.value ?? 0x2581
            return .metaspace(replacement: rep, prepend: prependScheme(d), split: d["split"] as? Bool ?? true)
        case "Split":
            let (p, isRegex) = try patternString(d["pattern"] as? [String: Any], "pre_tokenizer Split", path)
            let behavior = d["behavior"] as? String ?? "Isolated"
            guard isRegex, behavior == "Isolated", (d["invert"] as? Bool ?? false) == false, let sp = SplitPattern(regex: p) else {
                throw FormatError(path, "pre_tokenizer Split \(p) (\(behavior)) is not supported; supported regexes: GPT-2, Llama 3, Qwen2 (Isolated)")
            }
            return .split(sp)
        case "Sequence":
            return .sequence(try ((d["pretokenizers"] as? [[String: Any]]) ?? []).map { try parsePreTokenizer($0, path) })
        default:
            throw FormatError(path, "pre_tokenizer type \(type) is not supported (ByteLevel, Split, Metaspace, Digits, WhitespaceSplit, Sequence)")
        }
    }

    static func parseDecoder(_ d: [String: Any], _ path: String) throws -> Decoder {
        let type = d["type"] as? String ?? ""
        switch type {
        case "ByteLevel": return .byteLevel
        case "ByteFallback": return .byteFallback
        case "Fuse": return .fuse
        case "Metaspace":
            let rep = (d["replacement"] as? String)?.first ?? "\u{2581}"
            return .metaspace(replacement: rep, prepend: prependScheme(d))
        case "Strip":
            let c = (d["content"] as? String)?.first ?? " "
            return .strip(content: c, start: (d["start"] as? NSNumber)?.intValue ?? 0, stop: (d["stop"] as? NSNumber)?.intValue ?? 0)
        case "Replace":
            let (p, _) = try patternString(d["pattern"] as? [String: Any], "decoder Replace", path)
            return .replace(p, d["content"] as? String ?? "")
        case "Sequence":
            return .sequence(try ((d["decoders"] as? [[String: Any]]) ?? []).map { try parseDecoder($0, path) })
        default:
            throw FormatError(path, "decoder type \(type) is not supported (ByteLevel, Metaspace, ByteFallback, Fuse, Strip, Replace, Sequence)")
        }
    }

    /// Ids before and after `$A` in a single-sequence template.
    static func parsePostProcessor(_ d: [String: Any], _ path: String, _ idOf: (String) -> Int?) throws -> ([Int], [Int]) {
        let type = d["type"] as? String ?? ""
        switch type {
        case "ByteLevel": return ([], [])
        case "Sequence":
            var pre = [Int](), suf = [Int]()
            for p in (d["processors"] as? [[String: Any]]) ?? [] {
                let (a, b) = try parsePostProcessor(p, path, idOf)
                pre = a + pre; suf += b
            }
            return (pre, suf)
        case "TemplateProcessing":
            var pre = [Int](), suf = [Int]()
            var seenA = false
            let specials = d["special_tokens"] as? [String: Any] ?? [:]
            for item in (d["single"] as? [[String: Any]]) ?? [] {
                if item["Sequence"] != nil { seenA = true; continue }
                guard let st = item["SpecialToken"] as? [String: Any], let name = st["id"] as? String else {
                    throw FormatError(path, "post_processor template item \(item) is not understood")
                }
                var ids = ((specials[name] as? [String: Any])?["ids"] as? [NSNumber])?.map(\.intValue) ?? []
                if ids.isEmpty, let id = idOf(name) { ids = [id] }
                guard !ids.isEmpty else { throw FormatError(path, "post_processor names special token \(name), which has no id") }
                if seenA { suf += ids } else { pre += ids }
            }
            return (pre, suf)
        case "BertProcessing", "RobertaProcessing":
            func tok(_ k: String) -> Int? { ((d[k] as? [Any])?.last as? NSNumber)?.intValue }
            return (tok("cls").map { [$0] } ?? [], tok("sep").map { [$0] } ?? [])
        default:
            throw FormatError(path, "post_processor type \(type) is not supported (TemplateProcessing, ByteLevel, Sequence)")
        }
    }
}

