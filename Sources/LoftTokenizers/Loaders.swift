import Foundation
import LoftFormats

extension Tokenizer {
    /// Loads a tokenizer from a model directory (tokenizer.json, else a .gguf,
    /// tokenizer.model or *.tiktoken inside), a `.gguf`, a `tokenizer.json`, a
    /// `.tiktoken` ranks file (`family`: llama3, qwen or gpt2), or a SentencePiece `.model`.
    public static func load(source: String, family: String? = nil) throws -> Tokenizer {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: source, isDirectory: &isDir) else {
            throw FormatError(source, "no such file or directory; give a model directory, a .gguf, a tokenizer.json, a .tiktoken or a SentencePiece .model")
        }
        if isDir.boolValue {
            let dir = URL(fileURLWithPath: source)
            let names = ((try? FileManager.default.contentsOfDirectory(atPath: source)) ?? []).sorted()
            if names.contains("tokenizer.json") { return try load(source: dir.appendingPathComponent("tokenizer.json").path, family: family) }
            if let g = names.first(where: { $0.hasSuffix(".gguf") }) { return try load(source: dir.appendingPathComponent(g).path, family: family) }
            if names.contains("tokenizer.model") { return try load(source: dir.appendingPathComponent("tokenizer.model").path, family: family) }
            if let t = names.first(where: { $0.hasSuffix(".tiktoken") }) { return try load(source: dir.appendingPathComponent(t).path, family: family) }
            throw FormatError(source, "no tokenizer.json, .gguf, tokenizer.model or .tiktoken file in this directory")
        }
        let lower = source.lowercased()
        if lower.hasSuffix(".gguf") { return try Tokenizer(gguf: GGUFFile(path: source)) }
        if lower.hasSuffix(".json") { return try fromTokenizerJSON(path: source) }
        if lower.hasSuffix(".tiktoken") { return try fromTiktoken(path: source, family: family ?? guessFamily(source)) }
        if lower.hasSuffix(".model") { return try fromSentencePiece(path: source) }
        // Sniff: GGUF magic, protobuf, or text ranks.
        let head = (try? FileHandle(forReadingFrom: URL(fileURLWithPath: source)).readData(ofLength: 4)) ?? Data()
        if head == Data("GGUF".utf8) { return try Tokenizer(gguf: GGUFFile(path: source)) }
        if let f = family { return try fromTiktoken(path: source, family: f) }
        throw FormatError(source, "unrecognized tokenizer file; expected .gguf, tokenizer.json, .tiktoken (with --family) or a SentencePiece .model")
    }

    /// Ids beyond this are refused as corrupt (the largest real vocabularies are ~260k).
    static let maxVocabulary = 4_000_000

    static func guessFamily(_ path: String) throws -> String {
        let name = URL(fileURLWithPath: path).lastPathComponent.lowercased()
        for f in ["llama3", "qwen", "gpt2"] where name.contains(f) { return f }
        throw FormatError(path, "a tiktoken file needs its family (llama3, qwen or gpt2): pass family / --family")
    }

    // MARK: GGUF

    /// The tokenizer in a GGUF file's `tokenizer.ggml.*` metadata.
    public convenience init(gguf: GGUFFile) throws {
        let md = gguf.metadata
        let file = gguf.path
        guard let kind = md["tokenizer.ggml.model"]?.string else {
            throw FormatError(file, "metadata has no tokenizer.ggml.model; this GGUF carries no tokenizer")
        }
        guard let tokens = md["tokenizer.ggml.tokens"]?.strings, !tokens.isEmpty else {
            throw FormatError(file, "metadata has no tokenizer.ggml.tokens array")
        }
        guard md["tokenizer.ggml.tokens"]?.array?.count == tokens.count else {
            throw FormatError(file, "tokenizer.ggml.tokens holds values that are not strings; the file is corrupt")
        }
        let types = md["tokenizer.ggml.token_type"]?.ints ?? []
        func special(_ key: String) -> String? {
            guard let id = md["tokenizer.ggml.\(key)"]?.int, id >= 0, id < tokens.count else { return nil }
            return tokens[id]
        }
        var vocab = Vocab(minimumCapacity: tokens.count)
        let alphabet = Set(ByteLevelTable.byteToChar)
        for (i, t) in tokens.enumerated() {
            // Byte-level vocabularies spell every token in the byte alphabet; one that is not
            // (llama.cpp writes some added tokens raw) is re-spelled, as transformers does.
            var key = t
            if kind == "gpt2" && !t.unicodeScalars.allSatisfy({ alphabet.contains($0.value) }) { key = ByteLevelTable.spell(Array(t.utf8)) }
            if vocab[key] == nil { vocab[key] = Int32(i) }
        }
        var parts: Parts
        switch kind {
        case "gpt2":
            guard let mergeStrings = md["tokenizer.ggml.merges"]?.strings else {
                throw FormatError(file, "byte-level BPE (tokenizer.ggml.model = gpt2) needs tokenizer.ggml.merges")
            }
            let pairs = mergeStrings.compactMap { m -> (String, String)? in
                guard let sp = m.firstIndex(of: " ") else { return nil }
                return (String(m[..<sp]), String(m[m.index(after: sp)...]))
            }
            parts = Parts(vocab: vocab, merges: BPEModel.mergeTable(pairs, vocab: vocab), source: file)
            let pre = md["tokenizer.ggml.pre"]?.string ?? "default"
            parts.preTokenizer = try Self.ggufPreTokenizer(pre, file: file)
            parts.decoder = .byteLevel
            for (i, t) in tokens.enumerated() where i < types.count {
                let inAlphabet = t.unicodeScalars.allSatisfy { alphabet.contains($0.value) }
                if types[i] == 3 && inAlphabet { parts.added.append(AddedToken(content: t, id: i, special: true)) }
                if types[i] == 4 && inAlphabet { parts.added.append(AddedToken(content: t, id: i, special: false)) }
            }
            if md["tokenizer.ggml.add_bos_token"]?.bool == true, let b = md["tokenizer.ggml.bos_token_id"]?.int, b >= 0, b < tokens.count { parts.prefixIDs = [b] }
        case "llama":
            let scores = md["tokenizer.ggml.scores"]?.floats
            var pairs: [(String, String)]
            if let mergeStrings = md["tokenizer.ggml.merges"]?.strings {
                pairs = mergeStrings.compactMap { m in
                    guard let sp = m.firstIndex(of: " ") else { return nil }
                    return (String(m[..<sp]), String(m[m.index(after: sp)...]))
                }
            } else {
                pairs = Self.generateMerges(tokens: tokens, vocab: vocab, scores: scores)
            }
            parts = Parts(vocab: vocab, merges: BPEModel.mergeTable(pairs, vocab: vocab), source: file)
            parts.byteFallback = true
            parts.fuseUnk = true
            let prefix = md["tokenizer.ggml.add_space_prefix"]?.bool ?? true
            parts.preTokenizer = .metaspace(replacement: 0x2581, prepend: prefix ? .first : .never, split: false)
            var dec: [Decoder] = [.replace("\u{2581}", " "), .byteFallback, .fuse]
            if prefix { dec.append(.strip(content: " ", start: 1, stop: 0)) }
            parts.decoder = .sequence(dec)
            for (i, t) in tokens.enumerated() where i < types.count {
                if types[i] == 3 || types[i] == 2 { parts.added.append(AddedToken(content: t, id: i, special: true)) }
                if types[i] == 4 { parts.added.append(AddedToken(content: t, id: i, special: false)) }
            }
            if md["tokenizer.ggml.add_bos_token"]?.bool ?? true, let b = md["tokenizer.ggml.bos_token_id"]?.int, b >= 0, b < tokens.count { parts.prefixIDs = [b] }
        default:
            throw FormatError(file, "tokenizer.ggml.model = \(kind) is not supported (supported: gpt2 = byte-level BPE, llama = SentencePiece BPE)")
        }
        if md["tokenizer.ggml.add_eos_token"]?.bool == true, let e = md["tokenizer.ggml.eos_token_id"]?.int, e >= 0, e < tokens.count { parts.suffixIDs = [e] }
        parts.bos = special("bos_token_id"); parts.eos = special("eos_token_id")
        parts.pad = special("padding_token_id"); parts.unk = special("unknown_token_id")
        parts.chatTemplate = md["tokenizer.chat_template"]?.string
        self.init(parts)
    }

    static func ggufPreTokenizer(_ pre: String, file: String) throws -> PreTokenizer {
        switch pre {
        case "default", "gpt2", "gpt-2", "starcoder", "refact", "olmo", "stablelm2", "mpt", "jais":
            return .byteLevel(addPrefixSpace: false, useRegex: true)
        case "smollm":
            // SmolLM's tokenizer.json: Digits(individual) then ByteLevel with the GPT-2 regex.
            return .sequence([.digits(individual: true), .byteLevel(addPrefixSpace: false, useRegex: true)])
        case "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "dbrx", "smaug-bpe":
            return .sequence([.split(.cl100k(maxDigits: 3)), .byteLevel(addPrefixSpace: false, useRegex: false)])
        case "qwen2", "deepseek-r1-qwen", "megrez":
            return .sequence([.split(.cl100k(maxDigits: 1)), .byteLevel(addPrefixSpace: false, useRegex: false)])
        case "qwen35":
            return .sequence([.split(.qwen35), .byteLevel(addPrefixSpace: false, useRegex: false)])
        case "gpt-4o", "llama4", "minimax-m2":
            return .sequence([.split(.caseSplit(contractions: true, maxDigits: 3)), .byteLevel(addPrefixSpace: false, useRegex: false)])
        case "tekken":
            return .sequence([.split(.caseSplit(contractions: false, maxDigits: 1)), .byteLevel(addPrefixSpace: false, useRegex: false)])
        default:
            throw FormatError(file, "tokenizer.ggml.pre = \(pre) is not supported (supported: default/gpt2, smollm, llama3/llama-bpe, qwen2, qwen35, gpt-4o/llama4, tekken)")
        }
    }

    /// `transformers`' generate_merges: every split of a token into two tokens, ordered by
    /// the token's score (descending) when scores are given, else by its id.
    /// The merges Loft builds for a SentencePiece vocabulary without any (a
    /// GGUF with tokenizer.ggml.model = llama), for writing a tokenizer.json.
    public static func sentencePieceMerges(tokens: [String], scores: [Float]?) -> [(String, String)] {
        var vocab = Vocab(minimumCapacity: tokens.count)
        for (i, t) in tokens.enumerated() where vocab[t] == nil { vocab[t] = Int32(i) }
        return generateMerges(tokens: tokens, vocab: vocab, scores: scores)
    }

    static func generateMerges(tokens: [String], vocab: Vocab, scores: [Float]?) -> [(String, String)] {
        struct M { var l: String; var r: String; var key: Double; var ll: Int; var lr: Int; var il: Int32; var ir: Int32 }
        var all = [M]()
        let useScores = scores != nil && scores!.count == tokens.count
        for (i, t) in tokens.enumerated() {
            guard vocab[t] == Int32(i) else { continue }
            let chars = Array(t.unicodeScalars)
            if chars.count < 2 { continue }
            var local = [M]()
            for k in 1..<chars.count {
                var l = String.UnicodeScalarView(); l.append(contentsOf: chars[..<k])
                var r = String.UnicodeScalarView(); r.append(contentsOf: chars[k...])
                let ls = String(l), rs = String(r)
                if let il = vocab[ls], let ir = vocab[rs] {
                    local.append(M(l: ls, r: rs, key: useScores ? -Double(scores![i]) : Double(i), ll: k, lr: chars.count - k, il: il, ir: ir))
                }
            }
            local.sort { ($0.il, $0.ir) < ($1.il, $1.ir) }
            all += local
        }
        // Stable sort on (key, len left, len right); reverse order for scores means key = -score
        // and reverses the length tie-breaks too (Python's reverse=True). Sorted as plain
        // numbers: comparing the structs copied two strings per comparison (2 s for Gemma's 262k).
        let sign = useScores ? -1 : 1
        var order = all.indices.map { i in (all[i].key, sign * all[i].ll, sign * all[i].lr, i) }
        order.sort { x, y in
            if x.0 != y.0 { return x.0 < y.0 }
            if x.1 != y.1 { return x.1 < y.1 }
            if x.2 != y.2 { return x.2 < y.2 }
            return x.3 < y.3
        }
        return order.map { (all[$0.3].l, all[$0.3].r) }
    }

    // MARK: tiktoken

    static let llama3Specials: [String] = {
        var s = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
                 "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>", "<|start_header_id|>", "<|end_header_id|>",
                 "<|eom_id|>", "<|eot_id|>", "<|python_tag|>"]
        for i in 3..<248 { s.append("<|reserved_special_token_\(i)|>") }
        return s
    }()
    static let qwenAdded = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
                            "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
                            "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>",
                            "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
                            "<|repo_name|>", "<|file_sep|>"]

    /// A tiktoken ranks file ("base64-token rank" per line) with a family's regex and special tokens,
    /// converted as `transformers`' TikTokenConverter does (merges from every two-token split).
    static func fromTiktoken(path: String, family: String) throws -> Tokenizer {
        guard let data = FileManager.default.contents(atPath: path) else { throw FormatError(path, "cannot read the file") }
        var ranks = [(bytes: [UInt8], rank: Int)]()
        var lineNo = 0
        for line in data.split(separator: UInt8(ascii: "\n")) {
            lineNo += 1
            if line.isEmpty { continue }
            let fields = line.split(separator: UInt8(ascii: " "))
            guard fields.count == 2, let bytes = Data(base64Encoded: Data(fields[0])),
                  let rank = Int(String(decoding: fields[1], as: UTF8.self).trimmingCharacters(in: .whitespaces)) else {
                throw FormatError(path, "line \(lineNo) is not \"<base64 token> <rank>\"; not a tiktoken ranks file")
            }
            guard rank >= 0 && rank < Tokenizer.maxVocabulary, !bytes.isEmpty else {
                throw FormatError(path, "line \(lineNo): rank \(rank) is out of range (0..<\(Tokenizer.maxVocabulary)) or the token is empty")
            }
            ranks.append((Array(bytes), rank))
        }
        guard !ranks.isEmpty else { throw FormatError(path, "no ranks in the file") }
        var vocab = Vocab(minimumCapacity: ranks.count)
        var byBytes = [[UInt8]: Int32](minimumCapacity: ranks.count)
        for (b, r) in ranks {
            byBytes[b] = Int32(r)
            vocab[ByteLevelTable.spell(b)] = Int32(r)
        }
        // (merged rank, left rank, right rank) per valid split.
        var triples = [(Int32, Int32, Int32)]()
        triples.reserveCapacity(ranks.count * 4)
        for (b, r) in ranks where b.count > 1 {
            for k in 1..<b.count {
                if let l = byBytes[Array(b[..<k])], let rr = byBytes[Array(b[k...])] { triples.append((Int32(r), l, rr)) }
            }
        }
        triples.sort { $0 < $1 }
        var merges = [UInt64: UInt64](minimumCapacity: triples.count)
        for (i, t) in triples.enumerated() {
            let k = BPEModel.key(t.1, t.2)
            if merges[k] == nil { merges[k] = UInt64(i) << 32 | UInt64(UInt32(t.0)) }
        }
        var parts = Parts(vocab: vocab, merges: merges, source: path)
        parts.ignoreMerges = true
        parts.decoder = .byteLevel
        let base = ranks.map(\.rank).max()! + 1
        switch family.lowercased() {
        case "llama3", "llama-3", "llama":
            parts.preTokenizer = .sequence([.split(.cl100k(maxDigits: 3)), .byteLevel(addPrefixSpace: false, useRegex: false)])
            parts.added = llama3Specials.enumerated().map { AddedToken(content: $1, id: base + $0, special: true) }
            parts.prefixIDs = [base]
            parts.bos = "<|begin_of_text|>"; parts.eos = "<|end_of_text|>"
        case "qwen", "qwen2":
            parts.normalizer = .nfc
            parts.preTokenizer = .sequence([.split(.cl100k(maxDigits: 1)), .byteLevel(addPrefixSpace: false, useRegex: false)])
            parts.added = qwenAdded.enumerated().map { AddedToken(content: $1, id: base + $0, special: !$1.contains("tool_call")) }
            parts.eos = "<|endoftext|>"; parts.pad = "<|endoftext|>"
        case "gpt2", "gpt-2":
            parts.preTokenizer = .sequence([.split(.gpt2), .byteLevel(addPrefixSpace: false, useRegex: false)])
            parts.added = [AddedToken(content: "<|endoftext|>", id: base, special: true)]
            parts.bos = "<|endoftext|>"; parts.eos = "<|endoftext|>"; parts.unk = "<|endoftext|>"
        default:
            throw FormatError(path, "unknown tiktoken family \"\(family)\"; use llama3, qwen or gpt2")
        }
        return Tokenizer(parts)
    }

    // MARK: SentencePiece

    /// A SentencePiece BPE `.model` (protobuf), converted as `transformers`' LlamaTokenizer does:
    /// merges from every two-piece split ordered by piece id, Metaspace (prepend to the first
    /// piece), byte fallback, control pieces as special tokens, and BOS added.
    static func fromSentencePiece(path: String) throws -> Tokenizer {
        let sp = try SentencePieceModel(path: path)
        guard sp.modelType == 2 else {
            throw FormatError(path, "SentencePiece model type \(sp.modelType) (1 = unigram) is not supported; only BPE (2)")
        }
        var vocab = Vocab(minimumCapacity: sp.pieces.count)
        for (i, p) in sp.pieces.enumerated() where vocab[p.piece] == nil { vocab[p.piece] = Int32(i) }
        let tokens = sp.pieces.map(\.piece)
        let pairs = generateMerges(tokens: tokens, vocab: vocab, scores: nil)
        var parts = Parts(vocab: vocab, merges: BPEModel.mergeTable(pairs, vocab: vocab), source: path)
        parts.byteFallback = true
        parts.fuseUnk = true
        let prefix = sp.addDummyPrefix
        parts.preTokenizer = .metaspace(replacement: 0x2581, prepend: prefix ? .first : .never, split: false)
        var dec: [Decoder] = [.replace("\u{2581}", " "), .byteFallback, .fuse]
        if prefix { dec.append(.strip(content: " ", start: 1, stop: 0)) }
        parts.decoder = .sequence(dec)
        for (i, p) in sp.pieces.enumerated() {
            if p.type == 2 || p.type == 3 { parts.added.append(AddedToken(content: p.piece, id: i, special: true)) }
            if p.type == 4 { parts.added.append(AddedToken(content: p.piece, id: i, special: false)) }
        }
        func piece(_ id: Int) -> String? { id >= 0 && id < tokens.count ? tokens[id] : nil }
        parts.bos = piece(sp.bosID); parts.eos = piece(sp.eosID); parts.pad = piece(sp.padID); parts.unk = piece(sp.unkID)
        if sp.bosID >= 0 && sp.bosID < tokens.count { parts.prefixIDs = [sp.bosID] }
        return Tokenizer(parts)
    }
}

/// The parts of sentencepiece_model.proto that tokenization needs.
struct SentencePieceModel {
    struct Piece { var piece: String; var score: Float; var type: Int }
    var pieces: [Piece] = []
    var modelType = 1
    var unkID = 0, bosID = 1, eosID = 2, padID = -1
    var byteFallback = false
    var addDummyPrefix = true

    init(path: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else { throw FormatError(path, "cannot read the file") }
        let bytes = [UInt8](data)
        var r = ProtoReader(buf: bytes[...], file: path)
        while let (field, wire) = try r.nextField() {
            switch (field, wire) {
            case (1, 2):
                var sub = try r.subReader()
                var p = Piece(piece: "", score: 0, type: 1)
                while let (f, w) = try sub.nextField() {
                    switch (f, w) {
                    case (1, 2): p.piece = String(decoding: try sub.bytes(), as: UTF8.self)
                    case (2, 5): p.score = Float(bitPattern: try sub.fixed32())
                    case (3, 0): p.type = Int(try sub.varint())
                    default: try sub.skip(w)
                    }
                }
                pieces.append(p)
            case (2, 2):
                var sub = try r.subReader()
                while let (f, w) = try sub.nextField() {
                    switch (f, w) {
                    case (3, 0): modelType = Int(try sub.varint())
                    case (35, 0): byteFallback = try sub.varint() != 0
                    case (40, 0): unkID = Int(Int32(truncatingIfNeeded: try sub.varint()))
                    case (41, 0): bosID = Int(Int32(truncatingIfNeeded: try sub.varint()))
                    case (42, 0): eosID = Int(Int32(truncatingIfNeeded: try sub.varint()))
                    case (43, 0): padID = Int(Int32(truncatingIfNeeded: try sub.varint()))
                    default: try sub.skip(w)
                    }
                }
            case (3, 2):
                var sub = try r.subReader()
                while let (f, w) = try sub.nextField() {
                    if f == 3 && w == 0 { addDummyPrefix = try sub.varint() != 0 } else { try sub.skip(w) }
                }
            default:
                try r.skip(wire)
            }
        }
        guard !pieces.isEmpty else { throw FormatError(path, "no pieces found; not a SentencePiece model (ModelProto)") }
    }
}

struct ProtoReader {
    var buf: ArraySlice<UInt8>
    let file: String

    mutating func varint() throws -> UInt64 {
        var v: UInt64 = 0, shift: UInt64 = 0
        while true {
            guard let b = buf.first else { throw FormatError(file, "truncated protobuf varint") }
            buf = buf.dropFirst()
            v |= UInt64(b & 0x7F) << shift
            if b & 0x80 == 0 { return v }
            shift += 7
            if shift > 63 { throw FormatError(file, "malformed protobuf varint") }
        }
    }
    mutating func nextField() throws -> (Int, Int)? {
        if buf.isEmpty { return nil }
        let k = try varint()
        return (Int(k >> 3), Int(k & 7))
    }
    mutating func bytes() throws -> ArraySlice<UInt8> {
        let n = try varint()
        guard n <= UInt64(buf.count) else { throw FormatError(file, "protobuf field runs past the end of the file") }
        let s = buf.prefix(Int(n))
        buf = buf.dropFirst(Int(n))
        return s
    }
    mutating func subReader() throws -> ProtoReader { ProtoReader(buf: try bytes(), file: file) }
    mutating func fixed32() throws -> UInt32 {
        guard buf.count >= 4 else { throw FormatError(file, "truncated protobuf fixed32") }
        let i = buf.startIndex
        let v = UInt32(buf[i]) | UInt32(buf[i + 1]) << 8 | UInt32(buf[i + 2]) << 16 | UInt32(buf[i + 3]) << 24
        buf = buf.dropFirst(4)
        return v
    }
    mutating func skip(_ wire: Int) throws {
        switch wire {
        case 0: _ = try varint()
        case 1: guard buf.count >= 8 else { throw FormatError(file, "truncated protobuf") }; buf = buf.dropFirst(8)
        case 2: _ = try bytes()
        case 5: _ = try fixed32()
        default: throw FormatError(file, "unsupported protobuf wire type \(wire); not a SentencePiece model")
        }
    }
}
