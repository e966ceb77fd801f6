/// Turns ids into text one at a time, as generation produces them, never emitting
/// broken UTF-8: bytes of an incomplete character wait for the next ids.
///
/// The text it emits, concatenated, equals `tokenizer.decode(allIDs)` for byte-level
/// and SentencePiece tokenizers (the leading space SentencePiece prepends is dropped
/// at the start, as the decoder's Strip does).
public final class StreamingDetokenizer {
    let tokenizer: Tokenizer
    let skipSpecialTokens: Bool
    private var pending: [UInt8] = []
    private var atStart = true
    private let stripsLeadingSpace: Bool

    public init(tokenizer: Tokenizer, skipSpecialTokens: Bool = false) {
        self.tokenizer = tokenizer
        self.skipSpecialTokens = skipSpecialTokens
        if case .sequence(let l)? = tokenizer.decoder {
            stripsLeadingSpace = l.contains { if case .strip(" ", 1, _) = $0 { return true } else { return false } }
        } else if case .metaspace(_, let s)? = tokenizer.decoder {
            stripsLeadingSpace = s != .never
        } else {
            stripsLeadingSpace = false
        }
    }

    /// Adds one id; returns the text that is now complete (possibly empty).
    public func add(_ id: Int) -> String {
        if skipSpecialTokens && tokenizer.isSpecial(id) { return "" }
        var bytes = tokenizer.tokenBytes(id)
        if atStart && !bytes.isEmpty {
            if stripsLeadingSpace && bytes.first == 0x20 { bytes.removeFirst() }
            atStart = false
        }
        pending += bytes
        return drainComplete()
    }

    /// Returns whatever is left, with U+FFFD for an incomplete character.
    public func finish() -> String {
        defer { pending.removeAll() }
        return String(decoding: pending, as: UTF8.self)
    }

    /// Emits the longest prefix of `pending` that does not end inside a character.
    private func drainComplete() -> String {
        var end = pending.count
        // Walk back over at most 3 continuation bytes to the last lead byte.
        var i = pending.count - 1
        var back = 0
        while i >= 0 && back < 4 && pending[i] & 0xC0 == 0x80 { i -= 1; back += 1 }
        if i >= 0 {
            let lead = pending[i]
            let need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1
            if lead >= 0xC0 && pending.count - i < need { end = i }
        }
        let out = String(decoding: pending[..<end], as: UTF8.self)
        pending.removeFirst(end)
        return out
    }
}
