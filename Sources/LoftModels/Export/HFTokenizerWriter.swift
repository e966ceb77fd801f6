import Foundation
import LoftFormats
import LoftTokenizers

/// A Hugging Face tokenizer.json rebuilt from a GGUF's tokenizer, so that a
/// directory merged from a GGUF loads in transformers' AutoTokenizer.
/// Byte-level BPE (`tokenizer.ggml.model = gpt2`): the pre-tokenizer follows
/// `tokenizer.ggml.pre` with the regexes llama.cpp and the original
/// tokenizer.json files use; tokens of type CONTROL become special added
/// tokens, USER_DEFINED ones plain added tokens. SentencePiece (`llama`,
/// Gemma's and Llama 2's): BPE with byte fallback over merges built from the
/// scores, spaces as ▁ by the normalizer, as transformers' GGUF converter
/// writes it.
public enum HFTokenizerWriter {
    static let gpt2Regex = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
    static let llama3Regex = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let qwen2Regex = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    /// The tokenizer.json file, or nil with the reason when the GGUF's
    /// tokenizer is neither byte-level BPE of a known pre-tokenizer nor SentencePiece.
    public static func tokenizerJSON(_ gguf: GGUFFile) throws -> (data: Data?, reason: String?) {
        let (object, vocab, reason) = tokenizerObject(gguf)
        guard let object else { return (nil, reason) }
        return (try encode(object, vocab: vocab), nil)
    }

    /// SentencePiece pieces made only of spaces (Gemma stores "  " raw) spelled with ▁.
    static func respelled(_ tokens: [String]) -> [String] {
        tokens.map { t in
            !t.isEmpty && t.unicodeScalars.allSatisfy { $0 == " " } ? String(repeating: "\u{2581}", count: t.unicodeScalars.count) : t
        }
    }

    /// The vocabulary's place in the object, filled by `encode`.
    static let vocabPlaceholder = "__loft_vocab__"

    /// JSON of `object` with the vocabulary written out token by token: a
    /// Swift or Foundation dictionary would merge tokens that are canonically
    /// equal but spelled apart (Gemma has য় both precomposed and decomposed),
    /// and tokenizers would then miss the ones its merges name. The first id
    /// of a token spelled twice wins, as in Loft's own loader.
    static func encode(_ object: [String: Any], vocab tokens: [String]) throws -> Data {
        var json = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
        var seen = Set<[UInt8]>()
        var text: [UInt8] = [UInt8(ascii: "{")]
        for (id, t) in tokens.enumerated() where seen.insert(Array(t.utf8)).inserted {
            if seen.count > 1 { text.append(UInt8(ascii: ",")) }
            JSONWriter.quoted(t, into: &text)
            text += Array(":\(id)".utf8)
        }
        text.append(UInt8(ascii: "}"))
        guard let range = json.range(of: Data(("\"" + vocabPlaceholder + "\"").utf8)) else { return json }
        json.replaceSubrange(range, with: text)
        return json
    }

    /// The tokenizer.json object with `vocabPlaceholder` for the vocabulary,
    /// and the vocabulary's tokens by id (as the file spells them).
    static func tokenizerObject(_ gguf: GGUFFile) -> (json: [String: Any]?, vocab: [String], reason: String?) {
        let md = gguf.metadata
        if md["tokenizer.ggml.model"]?.string == "llama" { return sentencePieceJSON(gguf) }
        guard md["tokenizer.ggml.model"]?.string == "gpt2" else {
            return (nil, [], "tokenizer.ggml.model is \(md["tokenizer.ggml.model"]?.string ?? "missing"), not byte-level BPE (gpt2) or SentencePiece (llama)")
        }
        guard let tokens = md["tokenizer.ggml.tokens"]?.strings, !tokens.isEmpty else {
            return (nil, [], "the GGUF has no tokenizer.ggml.tokens")
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
            return (nil, [], "tokenizer.ggml.pre = \(pre) has no tokenizer.json equivalent in Loft yet")
        }
        var added: [[String: Any]] = []
        for (id, t) in tokens.enumerated() {
            let type = id < types.count ? types[id] : 1
            if type == 3 || type == 4 {  // CONTROL, USER_DEFINED
                added.append(["id": id, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                              "normalized": type == 4, "special": type == 3])
            }
        }
        let addBOS = md["tokenizer.ggml.add_bos_token"]?.bool ?? false
        let post = bosTemplate(md, tokens, addBOS: addBOS)
            ?? ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true]
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
                      "vocab": vocabPlaceholder, "merges": merges] as [String: Any],
        ]
        return (json, tokens, nil)
    }

    /// A post-processor that puts the BOS token first, when the GGUF says to add it.
    static func bosTemplate(_ md: [String: GGUFValue], _ tokens: [String], addBOS: Bool) -> [String: Any]? {
        guard addBOS, let bos = md["tokenizer.ggml.bos_token_id"]?.int, bos >= 0, bos < tokens.count else { return nil }
        let b = tokens[bos]
        return ["type": "TemplateProcessing",
                "single": [["SpecialToken": ["id": b, "type_id": 0]], ["Sequence": ["id": "A", "type_id": 0]]],
                "pair": [["SpecialToken": ["id": b, "type_id": 0]], ["Sequence": ["id": "A", "type_id": 0]],
                         ["SpecialToken": ["id": b, "type_id": 1]], ["Sequence": ["id": "B", "type_id": 1]]],
                "special_tokens": [b: ["id": b, "ids": [bos], "tokens": [b]]]]
    }

    /// SentencePiece as BPE: the merges Loft's own loader builds from the
    /// scores (so both read the file alike), byte fallback, unknown pieces
    /// fused; spaces become ▁ in the normalizer (with one prepended when
    /// `add_space_prefix`, Llama 2's default, not Gemma's), and back in the
    /// decoder. CONTROL and UNKNOWN pieces are special added tokens,
    /// USER_DEFINED ones plain added tokens, except runs of spaces, which
    /// transformers leaves to the model.
    static func sentencePieceJSON(_ gguf: GGUFFile) -> (json: [String: Any]?, vocab: [String], reason: String?) {
        let md = gguf.metadata
        guard let tokens = md["tokenizer.ggml.tokens"]?.strings, !tokens.isEmpty else {
            return (nil, [], "the GGUF has no tokenizer.ggml.tokens")
        }
        let types = md["tokenizer.ggml.token_type"]?.ints ?? []
        // Gemma's runs of spaces are raw spaces in the GGUF; tokenizer.json spells them
        // with ▁ like every other piece (the normalizer turns the text's spaces into ▁).
        let pieces = respelled(tokens)
        // Gemma's scores do not follow its merge order, the order of its pieces in the file
        // does (transformers' GGUF converter sorts Gemma's merges by position too).
        let gemma = md["general.architecture"]?.string?.hasPrefix("gemma") == true
        let merges = Tokenizer.sentencePieceMerges(tokens: pieces, scores: gemma ? pieces.indices.map { -Float($0) }
                                                                              : md["tokenizer.ggml.scores"]?.floats)
        var added: [[String: Any]] = []
        for (id, t) in tokens.enumerated() {
            let type = id < types.count ? types[id] : 1
            if type == 2 || type == 3 || (type == 4 && !t.contains(" ")) {
                added.append(["id": id, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                              "normalized": false, "special": type != 4])
            }
        }
        let prefix = md["tokenizer.ggml.add_space_prefix"]?.bool ?? true
        let replace: [String: Any] = ["type": "Replace", "pattern": ["String": " "], "content": "\u{2581}"]
        let normalizer: [String: Any] = prefix
            ? ["type": "Sequence", "normalizers": [["type": "Prepend", "prepend": "\u{2581}"], replace]]
            : replace
        var decoders: [[String: Any]] = [["type": "Replace", "pattern": ["String": "\u{2581}"], "content": " "],
                                         ["type": "ByteFallback"], ["type": "Fuse"]]
        if prefix { decoders.append(["type": "Strip", "content": " ", "start": 1, "stop": 0]) }
        let unk = md["tokenizer.ggml.unknown_token_id"]?.int.flatMap { $0 >= 0 && $0 < tokens.count ? tokens[$0] : nil }
        let json: [String: Any] = [
            "version": "1.0",
            "truncation": NSNull(),
            "padding": NSNull(),
            "added_tokens": added,
            "normalizer": normalizer,
            "pre_tokenizer": NSNull(),
            "post_processor": bosTemplate(md, tokens, addBOS: md["tokenizer.ggml.add_bos_token"]?.bool ?? true) ?? NSNull(),
            "decoder": ["type": "Sequence", "decoders": decoders],
            "model": ["type": "BPE", "dropout": NSNull(), "unk_token": unk ?? NSNull(), "continuing_subword_prefix": NSNull(),
                      "end_of_word_suffix": NSNull(), "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
                      "vocab": vocabPlaceholder, "merges": merges.map { [$0.0, $0.1] }] as [String: Any],
        ]
        return (json, pieces, nil)
    }
}
