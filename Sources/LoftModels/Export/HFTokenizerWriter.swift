import Foundation
import LoftFormats

/// A Hugging Face tokenizer.json rebuilt from a GGUF's byte-level BPE
/// tokenizer (`tokenizer.ggml.model = gpt2`), so that a directory merged from
/// a GGUF loads in transformers' AutoTokenizer. The pre-tokenizer follows
/// `tokenizer.ggml.pre` with the regexes llama.cpp and the original
/// tokenizer.json files use; tokens of type CONTROL become special added
/// tokens, USER_DEFINED ones plain added tokens.
public enum HFTokenizerWriter {
    static let gpt2Regex = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
    static let llama3Regex = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let qwen2Regex = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    /// The tokenizer.json object, or nil with the reason when the GGUF's
    /// tokenizer is not byte-level BPE of a known pre-tokenizer.
    public static func tokenizerJSON(_ gguf: GGUFFile) -> (json: [String: Any]?, reason: String?) {
        let md = gguf.metadata
        guard md["tokenizer.ggml.model"]?.string == "gpt2" else {
            return (nil, "tokenizer.ggml.model is \(md["tokenizer.ggml.model"]?.string ?? "missing"), not byte-level BPE (gpt2)")
        }
        guard let tokens = md["tokenizer.ggml.tokens"]?.strings, !tokens.isEmpty else {
            return (nil, "the GGUF has no tokenizer.ggml.tokens")
        }
        let types = md["tokenizer.ggml.token_type"]?.ints ?? []
        let merges = md["tokenizer.ggml.merges"]?.strings ?? []
        let pre = md["tokenizer.ggml.pre"]?.string ?? "default"
        let byteLevel: (Bool) -> [String: Any] = { ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": $0] }
        func split(_ regex: String) -> [String: Any] {
            ["type": "Split", "pattern": ["Regex": regex], "behavior": "Isolated", "invert": false]
        }
        let preTokenizer: [String: Any]
        switch pre {
        case "default", "gpt2", "gpt-2", "starcoder", "refact", "olmo", "stablelm2", "mpt", "jais":
            preTokenizer = byteLevel(true)
        case "smollm":
            preTokenizer = ["type": "Sequence", "pretokenizers": [["type": "Digits", "individual_digits": true], byteLevel(true)]]
        case "llama3", "llama-v3", "llama-bpe", "falcon3", "dbrx", "smaug-bpe":
            preTokenizer = ["type": "Sequence", "pretokenizers": [split(llama3Regex), byteLevel(false)]]
        case "qwen2", "deepseek-r1-qwen", "megrez":
            preTokenizer = ["type": "Sequence", "pretokenizers": [split(qwen2Regex), byteLevel(false)]]
        default:
            return (nil, "tokenizer.ggml.pre = \(pre) has no tokenizer.json equivalent in Loft yet")
        }
        var vocab: [String: Int] = [:]
        var added: [[String: Any]] = []
        for (id, t) in tokens.enumerated() {
            vocab[t] = id
            let type = id < types.count ? types[id] : 1
            if type == 3 || type == 4 {  // CONTROL, USER_DEFINED
                added.append(["id": id, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                              "normalized": type == 4, "special": type == 3])
            }
        }
        let addBOS = md["tokenizer.ggml.add_bos_token"]?.bool ?? false
        var post: [String: Any] = ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true]
        if addBOS, let bos = md["tokenizer.ggml.bos_token_id"]?.int, bos >= 0, bos < tokens.count {
            let b = tokens[bos]
            post = ["type": "TemplateProcessing",
                    "single": [["SpecialToken": ["id": b, "type_id": 0]], ["Sequence": ["id": "A", "type_id": 0]]],
                    "pair": [["SpecialToken": ["id": b, "type_id": 0]], ["Sequence": ["id": "A", "type_id": 0]],
                             ["SpecialToken": ["id": b, "type_id": 1]], ["Sequence": ["id": "B", "type_id": 1]]],
                    "special_tokens": [b: ["id": b, "ids": [bos], "tokens": [b]]]]
        }
        let json: [String: Any] = [
            "version": "1.0",
            "truncation": NSNull(),
            "padding": NSNull(),
            "added_tokens": added,
            "normalizer": NSNull(),
            "pre_tokenizer": preTokenizer,
            "post_processor": post,
            "decoder": ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true],
            "model": ["type": "BPE", "dropout": NSNull(), "unk_token": NSNull(), "continuing_subword_prefix": NSNull(),
                      "end_of_word_suffix": NSNull(), "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                      "vocab": vocab, "merges": merges] as [String: Any],
        ]
        return (json, nil)
    }
}
