// Byte-pair encoding by merge rank, reproducing `tokenizers`' BPE model:
// symbols start as single characters (or byte-fallback `<0xNN>` pieces), and the
// lowest-ranked adjacent pair (leftmost on ties) is merged until none is left.

import Foundation

final class BPEModel {
    /// Token string (as the vocabulary spells it) → id.
    let vocab: Vocab
    /// Single-character tokens, by scalar value.
    let charIDs: [UInt32: Int32]
    /// charIDs for the Basic Multilingual Plane, -1 where absent.
    let bmpIDs: [Int32]
    /// (left << 32 | right) → (rank << 32 | merged id).
    let merges: [UInt64: UInt64]
    let byteFallbackIDs: [Int32]?  // 256 entries (<0x00>..<0xFF>), when byte fallback is on
    let unkID: Int32?
    let fuseUnk: Bool
    let ignoreMerges: Bool
    /// Pre-token → ids; bounded.
    private var cache: [TokenKey: [Int32]] = [:]
    private let cacheLimit = 200_000
    private let lock = NSLock()

    init(vocab: Vocab, merges: [UInt64: UInt64], byteFallback: Bool, unkID: Int32?, fuseUnk: Bool, ignoreMerges: Bool) {
        self.vocab = vocab
        var chars = [UInt32: Int32]()
        for (tok, id) in vocab {
            let u = tok.string.unicodeScalars
            if u.count == 1 { chars[u.first!.value] = id }
        }
        self.charIDs = chars
        var bmp = [Int32](repeating: -1, count: 0x10000)
        for (c, id) in chars where c < 0x10000 { bmp[Int(c)] = id }
        self.bmpIDs = bmp
        self.merges = merges
        if byteFallback {
            var ids = [Int32](repeating: -1, count: 256)
            let hex = Array("0123456789ABCDEF")
            for b in 0..<256 {
                ids[b] = vocab["<0x\(hex[b >> 4])\(hex[b & 15])>"] ?? -1
            }
            byteFallbackIDs = ids
        } else {
            byteFallbackIDs = nil
        }
        self.unkID = unkID
        self.fuseUnk = fuseUnk
        self.ignoreMerges = ignoreMerges
    }

    @inline(__always) static func key(_ a: Int32, _ b: Int32) -> UInt64 { UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b)) }

    /// Merges from (left, right) token strings in rank order. Pairs naming unknown tokens are skipped, as `tokenizers` refuses them.
    static func mergeTable(_ pairs: [(String, String)], vocab: Vocab) -> [UInt64: UInt64] {
        var m = [UInt64: UInt64](minimumCapacity: pairs.count)
        for (rank, (a, b)) in pairs.enumerated() {
            guard let ia = vocab[a], let ib = vocab[b], let ic = vocab[a + b] else { continue }
            let k = key(ia, ib)
            if m[k] == nil { m[k] = UInt64(rank) << 32 | UInt64(UInt32(bitPattern: ic)) }
        }
        return m
    }

    /// Ids for one pre-token; `key` identifies it (its text), `word` spells it in the model's alphabet.
    func tokenize(key: String, word: () -> [UInt32]) -> [Int32] {
        lock.lock()
        let hit = cache[key]
        lock.unlock()
        if let hit { return hit }
        let ids = tokenizeUncached(word(), spans: nil)
        if key.utf8.count <= 256 {
            lock.lock()
            if cache.count >= cacheLimit { cache.removeAll(keepingCapacity: true) }
            cache[key] = ids
            lock.unlock()
        }
        return ids
    }

    /// Ids and, per id, the range of word characters it covers.
    func tokenizeWithSpans(_ word: [UInt32]) -> ([Int32], [Range<Int>]) {
        var spans = [Range<Int>]()
        let ids = tokenizeUncached(word, spans: &spans)
        return (ids, spans)
    }

    private func tokenizeUncached(_ w: [UInt32], spans: UnsafeMutablePointer<[Range<Int>]>?) -> [Int32] {
        if w.isEmpty { return [] }
        if ignoreMerges {
            var s = String.UnicodeScalarView()
            for c in w { s.append(Unicode.Scalar(c)!) }
            if let id = vocab[String(s)] {
                spans?.pointee = [0..<w.count]
                return [id]
            }
        }
        // Initial symbols.
        var ids = [Int32](); ids.reserveCapacity(w.count)
        var starts = [Int32](); starts.reserveCapacity(w.count)
        var ends = [Int32](); ends.reserveCapacity(w.count)
        var unk: (id: Int32, start: Int32, end: Int32)? = nil
        func add(_ id: Int32, _ s: Int, _ e: Int) { ids.append(id); starts.append(Int32(s)); ends.append(Int32(e)) }
        for (i, c) in w.enumerated() {
            let known: Int32? = c < 0x10000 ? (bmpIDs[Int(c)] >= 0 ? bmpIDs[Int(c)] : nil) : charIDs[c]
            if let id = known {
                if let u = unk { add(u.id, Int(u.start), Int(u.end)); unk = nil }
                add(id, i, i + 1)
                continue
            }
            if let fb = byteFallbackIDs, let scalar = Unicode.Scalar(c) {
                var bytes = [Int32]()
                var ok = true
                for b in String(Character(scalar)).utf8 {
                    let id = fb[Int(b)]
                    if id < 0 { ok = false; break }
                    bytes.append(id)
                }
                if ok {
                    // `tokenizers` flushes no pending unk here; it stays pending until the next known char.
                    for id in bytes { add(id, i, i + 1) }
                    continue
                }
            }
            if let u = unkID {
                if let pending = unk {
                    if fuseUnk { unk = (u, pending.start, Int32(i + 1)) } else { add(pending.id, Int(pending.start), Int(pending.end)); unk = (u, Int32(i), Int32(i + 1)) }
                } else {
                    unk = (u, Int32(i), Int32(i + 1))
                }
            }
        }
        if let u = unk { add(u.id, Int(u.start), Int(u.end)) }
        let n = ids.count
        if n > 1 {
            var prev = [Int32](unsafeUninitializedCapacity: n) { b, c in for i in 0..<n { b[i] = Int32(i) - 1 }; c = n }
            var next = [Int32](unsafeUninitializedCapacity: n) { b, c in for i in 0..<n { b[i] = i + 1 < n ? Int32(i + 1) : -1 }; c = n }
            var alive = [Bool](repeating: true, count: n)
            var heap = MergeHeap(capacity: n)
            for i in 0..<(n - 1) {
                if let m = merges[Self.key(ids[i], ids[i + 1])] { heap.push(rank: UInt32(m >> 32), pos: UInt32(i), newID: Int32(truncatingIfNeeded: m)) }
            }
            while let top = heap.pop() {
                let pos = Int(top.pos)
                if !alive[pos] { continue }
                let nx = Int(next[pos])
                if nx < 0 { continue }
                guard let m = merges[Self.key(ids[pos], ids[nx])], Int32(truncatingIfNeeded: m) == top.newID else { continue }
                ids[pos] = top.newID
                ends[pos] = ends[nx]
                alive[nx] = false
                let nn = next[nx]
                next[pos] = nn
                if nn >= 0 { prev[Int(nn)] = Int32(pos) }
                let pv = prev[pos]
                if pv >= 0, let m2 = merges[Self.key(ids[Int(pv)], ids[pos])] {
                    heap.push(rank: UInt32(m2 >> 32), pos: UInt32(pv), newID: Int32(truncatingIfNeeded: m2))
                }
                if nn >= 0, let m2 = merges[Self.key(ids[pos], ids[Int(nn)])] {
                    heap.push(rank: UInt32(m2 >> 32), pos: UInt32(pos), newID: Int32(truncatingIfNeeded: m2))
                }
            }
            var out = [Int32](); out.reserveCapacity(n)
            var sp = [Range<Int>]()
            var i = 0
            while i >= 0 && i < n {
                out.append(ids[i])
                if spans != nil { sp.append(Int(starts[i])..<Int(ends[i])) }
                i = Int(next[i])
            }
            spans?.pointee = sp
            return out
        }
        spans?.pointee = (0..<n).map { Int(starts[$0])..<Int(ends[$0]) }
        return ids
    }
}

/// Binary min-heap of pending merges ordered by (rank, position), as `tokenizers` orders them.
struct MergeHeap {
    private var keys: [UInt64] = []
    private var newIDs: [Int32] = []
    init(capacity: Int) { keys.reserveCapacity(capacity); newIDs.reserveCapacity(capacity) }

    mutating func push(rank: UInt32, pos: UInt32, newID: Int32) {
        keys.append(UInt64(rank) << 32 | UInt64(pos)); newIDs.append(newID)
        var i = keys.count - 1
        while i > 0 {
            let p = (i - 1) / 2
            if keys[p] <= keys[i] { break }
            keys.swapAt(p, i); newIDs.swapAt(p, i); i = p
        }
    }

    mutating func pop() -> (pos: UInt32, newID: Int32)? {
        guard !keys.isEmpty else { return nil }
        let top = (UInt32(truncatingIfNeeded: keys[0]), newIDs[0])
        let last = keys.count - 1
        keys.swapAt(0, last); newIDs.swapAt(0, last)
        keys.removeLast(); newIDs.removeLast()
        var i = 0
        let n = keys.count
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < n && keys[l] < keys[m] { m = l }
            if r < n && keys[r] < keys[m] { m = r }
            if m == i { break }
            keys.swapAt(m, i); newIDs.swapAt(m, i); i = m
        }
        return top
    }
}
