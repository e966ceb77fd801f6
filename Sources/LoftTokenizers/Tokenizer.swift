import Foundation
import LoftFormats

/// A tokenizer token-exact with Hugging Face `tokenizers` for the supported
/// families: byte-level BPE (GPT-2, Llama 3, Qwen, SmolLM) and SentencePiece-style
/// BPE with byte fallback (Llama 2, Mistral). Load it with `Tokenizer.load(source:)`.
///
/// Encoding and decoding are thread-safe (the pre-token cache is locked).
public final class Tokenizer: @unchecked Sendable {
    let model: BPEModel
    let normalizer: Normalizer?
    let preTokenizer: PreTokenizer?
    let decoder: Decoder?
    let byteLevel: Bool
    let addedTokens: [AddedToken]
    let rawMatcher: AddedTokenMatcher
    let normalizedMatcher: AddedTokenMatcher
    /// Ids the post-processor puts around a sequence when special tokens are added.
    let prefixIDs: [Int]
    let suffixIDs: [Int]
    private var idToTokenTable: [String?]
    private var specialIDs: Set<Int>

    /// All tokens, added ones included (`len(tokenizer)` in transformers).
    public let vocabularySize: Int
    public let bosTokenID: Int?
    public let eosTokenID: Int?
    public let padTokenID: Int?
    public let unkTokenID: Int?
    public let bosToken: String?
    public let eosToken: String?
    public let padToken: String?
    public let unkToken: String?
    /// The Jinja chat template, from tokenizer_config.json or the GGUF's `tokenizer.chat_template`.
    public let chatTemplate: String?
    /// Where it was loaded from, for messages.
    public let source: String

    struct Parts {
        var vocab: Vocab
        var merges: [UInt64: UInt64]
        var byteFallback = false
        var unkID: Int32? = nil
        var fuseUnk = false
        var ignoreMerges = false
        var normalizer: Normalizer? = nil
        var preTokenizer: PreTokenizer? = nil
        var decoder: Decoder? = nil
        var added: [AddedToken] = []
        var prefixIDs: [Int] = []
        var suffixIDs: [Int] = []
        var bos: String? = nil, eos: String? = nil, pad: String? = nil, unk: String? = nil
        var chatTemplate: String? = nil
        var source: String
    }

    init(_ p: Parts) {
        model = BPEModel(vocab: p.vocab, merges: p.merges, byteFallback: p.byteFallback, unkID: p.unkID, fuseUnk: p.fuseUnk, ignoreMerges: p.ignoreMerges)
        normalizer = p.normalizer
        preTokenizer = p.preTokenizer
        decoder = p.decoder
        byteLevel = p.preTokenizer?.usesByteLevel ?? false
        addedTokens = p.added
        rawMatcher = AddedTokenMatcher(p.added.filter { !$0.normalized || p.normalizer == nil })
        normalizedMatcher = AddedTokenMatcher(p.normalizer == nil ? [] : p.added.filter { $0.normalized })
        prefixIDs = p.prefixIDs
        suffixIDs = p.suffixIDs
        var maxID = -1
        for (_, id) in p.vocab { maxID = max(maxID, Int(id)) }
        for t in p.added { maxID = max(maxID, t.id) }
        var table = [String?](repeating: nil, count: maxID + 1)
        for (tok, id) in p.vocab where id >= 0 { table[Int(id)] = tok.string }
        for t in p.added where t.id >= 0 { table[t.id] = t.content }
        idToTokenTable = table
        specialIDs = Set(p.added.filter(\.special).map(\.id))
        vocabularySize = table.count
        func lookup(_ s: String?) -> Int? {
            guard let s else { return nil }
            if let t = p.added.first(where: { $0.content.utf8.elementsEqual(s.utf8) }) { return t.id }
            return p.vocab[s].map(Int.init)
        }
        bosToken = p.bos; eosToken = p.eos; padToken = p.pad; unkToken = p.unk
        bosTokenID = lookup(p.bos); eosTokenID = lookup(p.eos); padTokenID = lookup(p.pad); unkTokenID = lookup(p.unk)
        chatTemplate = p.chatTemplate
        source = p.source
    }

    // MARK: Vocabulary

    public func tokenToID(_ token: String) -> Int? {
        if let t = addedTokens.first(where: { $0.content.utf8.elementsEqual(token.utf8) }) { return t.id }
        return model.vocab[token].map(Int.init)
    }

    public func idToToken(_ id: Int) -> String? {
        guard id >= 0 && id < idToTokenTable.count else { return nil }
        return idToTokenTable[id]
    }

    public func isSpecial(_ id: Int) -> Bool { specialIDs.contains(id) }

    /// The added tokens (special or not), as loaded.
    public var allAddedTokens: [AddedToken] { addedTokens }

    // MARK: Encoding

    public func encode(_ text: String, addSpecialTokens: Bool = true) -> [Int] {
        var ids = [Int]()
        run(text, addSpecialTokens: addSpecialTokens, offsets: nil, into: &ids)
        return ids
    }

    /// Ids with, per id, the range of Unicode scalars (Python `str` indices) of `text` it came from.
    /// Ids the post-processor adds get the empty range 0..<0.
    public func encodeWithOffsets(_ text: String, addSpecialTokens: Bool = true) -> (ids: [Int], offsets: [Range<Int>]) {
        var ids = [Int]()
        var offs = [Range<Int>]()
        run(text, addSpecialTokens: addSpecialTokens, offsets: &offs, into: &ids)
        return (ids, offs)
    }

    /// Encodes many texts; with `parallel`, across all cores (results in input order).
    public func encodeBatch(_ texts: [String], addSpecialTokens: Bool = true, parallel: Bool = false) -> [[Int]] {
        guard parallel && texts.count > 1 else { return texts.map { encode($0, addSpecialTokens: addSpecialTokens) } }
        var out = [[Int]](repeating: [], count: texts.count)
        out.withUnsafeMutableBufferPointer { buf in
            let base = buf.baseAddress!
            DispatchQueue.concurrentPerform(iterations: texts.count) { i in
                (base + i).pointee = encode(texts[i], addSpecialTokens: addSpecialTokens)
            }
        }
        return out
    }

    public func encodeBatchWithOffsets(_ texts: [String], addSpecialTokens: Bool = true) -> [(ids: [Int], offsets: [Range<Int>])] {
        texts.map { encodeWithOffsets($0, addSpecialTokens: addSpecialTokens) }
    }

    private func run(_ text: String, addSpecialTokens: Bool, offsets: UnsafeMutablePointer<[Range<Int>]>?, into ids: inout [Int]) {
        if addSpecialTokens {
            ids += prefixIDs
            offsets?.pointee += Array(repeating: 0..<0, count: prefixIDs.count)
        }
        let chars = scalars(of: text)
        var p = 0
        for (r, idx) in rawMatcher.matches(chars, 0, chars.count) {
            if r.lowerBound > p { encodeSegment(chars, p..<r.lowerBound, offsets, &ids) }
            ids.append(rawMatcher.tokens[idx].id)
            offsets?.pointee.append(r)
            p = r.upperBound
        }
        if p < chars.count { encodeSegment(chars, p..<chars.count, offsets, &ids) }
        if addSpecialTokens {
            ids += suffixIDs
            offsets?.pointee += Array(repeating: 0..<0, count: suffixIDs.count)
        }
    }

    private func encodeSegment(_ all: [UInt32], _ range: Range<Int>, _ offsets: UnsafeMutablePointer<[Range<Int>]>?, _ ids: inout [Int]) {
        var text = AlignedText(chars: Array(all[range]), base: range.lowerBound)
        if let normalizer { text = normalizer.apply(text) }
        if text.count == 0 { return }
        var p = 0
        var segments = [Range<Int>]()
        var addedAt = [(Range<Int>, Int)]()
        if !normalizedMatcher.isEmpty {
            for (r, idx) in normalizedMatcher.matches(text.chars, 0, text.count) {
                if r.lowerBound > p { segments.append(p..<r.lowerBound) }
                addedAt.append((r, idx)); segments.append(r)
                p = r.upperBound
            }
        }
        if p < text.count { segments.append(p..<text.count) }
        var k = 0
        for seg in segments {
            if k < addedAt.count && addedAt[k].0 == seg {
                ids.append(normalizedMatcher.tokens[addedAt[k].1].id)
                offsets?.pointee.append(Int(text.starts[seg.lowerBound])..<Int(text.ends[seg.upperBound - 1]))
                k += 1
                continue
            }
            // The whole text when there is one segment (the usual case): no copy.
            var pieces = [seg]
            if segments.count == 1 {
                preTokenizer?.apply(&text, &pieces)
                for r in pieces where !r.isEmpty { encodePiece(text, r, offsets, &ids) }
            } else {
                var t = text.slice(seg)
                pieces = [0..<t.count]
                preTokenizer?.apply(&t, &pieces)
                for r in pieces where !r.isEmpty { encodePiece(t, r, offsets, &ids) }
            }
        }
    }

    /// The model's alphabet for a piece: byte-level spelling of its UTF-8, or its characters.
    private func modelWord(_ t: AlignedText, _ r: Range<Int>, charOf: inout [Int]) -> [UInt32] {
        var word = [UInt32]()
        word.reserveCapacity(r.count)
        if byteLevel {
            var buf = [UInt8](); buf.reserveCapacity(4)
            for i in r {
                let c = t.chars[i]
                if c < 0x80 { word.append(ByteLevelTable.byteToChar[Int(c)]); charOf.append(i); continue }
                buf.removeAll(keepingCapacity: true)
                appendUTF8(c, &buf)
                for b in buf { word.append(ByteLevelTable.byteToChar[Int(b)]); charOf.append(i) }
            }
        } else {
            for i in r { word.append(t.chars[i]); charOf.append(i) }
        }
        return word
    }

    private func encodePiece(_ t: AlignedText, _ r: Range<Int>, _ offsets: UnsafeMutablePointer<[Range<Int>]>?, _ ids: inout [Int]) {
        if let offsets {
            var charOf = [Int]()
            let word = modelWord(t, r, charOf: &charOf)
            let (pieceIDs, spans) = model.tokenizeWithSpans(word)
            for (id, s) in zip(pieceIDs, spans) {
                ids.append(Int(id))
                let a = charOf[s.lowerBound], b = charOf[s.upperBound - 1]
                offsets.pointee.append(Int(t.starts[a])..<Int(t.ends[b]))
            }
            return
        }
        // The piece's own UTF-8 is the cache key (the model word is a function of it).
        var n = 0
        for i in r { let c = t.chars[i]; n += c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4 }
        let key = String(unsafeUninitializedCapacity: n) { buf in
            var k = 0
            for i in r { k = writeUTF8(t.chars[i], buf, k) }
            return k
        }
        let pieceIDs = model.tokenize(key: key) {
            var unused = [Int]()
            return modelWord(t, r, charOf: &unused)
        }
        for id in pieceIDs { ids.append(Int(id)) }
    }

    // MARK: Decoding

    /// The text of `ids`, as `tokenizers`' decode gives it. Unknown ids are skipped.
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = false) -> String {
        var tokens = [String]()
        tokens.reserveCapacity(ids.count)
        for id in ids {
            if skipSpecialTokens && specialIDs.contains(id) { continue }
            if let t = idToToken(id) { tokens.append(t) }
        }
        if let decoder { tokens = decoder.decode(tokens) }
        return tokens.joined()
    }

    /// The raw bytes one token stands for (byte-level unspelled, `<0xNN>` as its byte, `▁` as space).
    /// Used by the streaming detokenizer and constrained decoding.
    public func tokenBytes(_ id: Int) -> [UInt8] {
        guard let t = idToToken(id) else { return [] }
        if addedTokens.contains(where: { $0.id == id }) { return Array(t.utf8) }
        if byteLevel { return ByteLevelTable.unspell(t) ?? Array(t.utf8) }
        if let b = Decoder.byteToken(t), model.byteFallbackIDs != nil { return [b] }
        return Array(Decoder.replaceScalars(t, "\u{2581}", " ").utf8)
    }
}

@inline(__always) func appendUTF8(_ c: UInt32, _ out: inout [UInt8]) {
    if c < 0x80 { out.append(UInt8(c)) }
    else if c < 0x800 { out.append(UInt8(0xC0 | (c >> 6))); out.append(UInt8(0x80 | (c & 0x3F))) }
    else if c < 0x10000 {
        out.append(UInt8(0xE0 | (c >> 12))); out.append(UInt8(0x80 | ((c >> 6) & 0x3F))); out.append(UInt8(0x80 | (c & 0x3F)))
    } else {
        out.append(UInt8(0xF0 | (c >> 18))); out.append(UInt8(0x80 | ((c >> 12) & 0x3F)))
        out.append(UInt8(0x80 | ((c >> 6) & 0x3F))); out.append(UInt8(0x80 | (c & 0x3F)))
    }
}

@inline(__always) func writeUTF8(_ c: UInt32, _ out: UnsafeMutableBufferPointer<UInt8>, _ k: Int) -> Int {
    if c < 0x80 { out[k] = UInt8(c); return k + 1 }
    if c < 0x800 { out[k] = UInt8(0xC0 | (c >> 6)); out[k + 1] = UInt8(0x80 | (c & 0x3F)); return k + 2 }
    if c < 0x10000 {
        out[k] = UInt8(0xE0 | (c >> 12)); out[k + 1] = UInt8(0x80 | ((c >> 6) & 0x3F)); out[k + 2] = UInt8(0x80 | (c & 0x3F))
        return k + 3
    }
    out[k] = UInt8(0xF0 | (c >> 18)); out[k + 1] = UInt8(0x80 | ((c >> 12) & 0x3F))
    out[k + 2] = UInt8(0x80 | ((c >> 6) & 0x3F)); out[k + 3] = UInt8(0x80 | (c & 0x3F))
    return k + 4
}

/// The Unicode scalar values of a string, decoded straight from its UTF-8.
func scalars(of text: String) -> [UInt32] {
    var s = text
    return s.withUTF8 { u in
        [UInt32](unsafeUninitializedCapacity: u.count) { out, n in
            var i = 0, k = 0
            let c = u.count
            while i < c {
                let b = UInt32(u[i])
                if b < 0x80 { out[k] = b; i += 1 }
                else if b < 0xE0 { out[k] = (b & 0x1F) << 6 | UInt32(u[i + 1] & 0x3F); i += 2 }
                else if b < 0xF0 { out[k] = (b & 0x0F) << 12 | UInt32(u[i + 1] & 0x3F) << 6 | UInt32(u[i + 2] & 0x3F); i += 3 }
                else { out[k] = (b & 0x07) << 18 | UInt32(u[i + 1] & 0x3F) << 12 | UInt32(u[i + 2] & 0x3F) << 6 | UInt32(u[i + 3] & 0x3F); i += 4 }
                k += 1
            }
            n = k
        }
    }
}
