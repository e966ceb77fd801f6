import Foundation
import LoftFormats

/// Tokenized datasets on disk: one streaming pass renders and tokenizes every
/// row into shards of examples (memory stays flat in the dataset's size), and a
/// later run with the same data, tokenizer, template and data options opens
/// them at once instead of tokenizing again.
///
///     <root>/<key>/meta.json            counts, stats, warnings, problems, files
///     <root>/<key>/index.bin            per example: shard, byte offset, length, entry, file, row
///     <root>/<key>/shard-NNNNN.bin      ids then labels of each example, Int32 little-endian
///
/// The key hashes the dataset entries (paths, types, field and role maps,
/// variables, Hub config/split/revision), each data file (size, modification
/// time and the bytes of 66 sampled 64 KiB blocks: the first, the last and 64
/// spread between), the tokenizer (its source, vocabulary, special ids and the
/// ids it gives a probe text), the chat template's source and the options that
/// change examples. Validation split, weights and seed are applied after
/// loading, so changing them reuses the cache.
public final class TokenCache {
    public static let formatVersion = 1
    public let root: String

    /// `root` nil: $LOFT_CACHE/data, else ~/.cache/loft/data.
    public init(root: String? = nil, environment: [String: String] = ProcessInfo.processInfo.environment) {
        if let root { self.root = root; return }
        let base = environment["LOFT_CACHE"].flatMap { $0.isEmpty ? nil : $0 }
            ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/loft").path
        self.root = base + "/data"
    }

    /// What the streaming pass has done so far.
    public struct Progress: Sendable {
        public var entry: Int
        public var entries: Int
        public var rows: Int
        public var examples: Int
        public var tokens: Int
        /// Bytes of the data files read so far, of `totalBytes`.
        public var bytes: Int64
        public var totalBytes: Int64
        public var seconds: Double
    }

    /// The shards of `specs` as `builder` makes them: opened when cached,
    /// else built in one streaming pass (then `progress` is called every few
    /// thousand rows) and kept. Throws what `build` would refuse.
    public func shards(_ specs: [DatasetSpec], builder: DatasetBuilder, progress: ((Progress) -> Void)? = nil) throws -> TokenShards {
        guard !specs.isEmpty else { throw DataError("no datasets given", fix: "add at least one entry to `datasets:`") }
        let resolved = try specs.map { spec -> DatasetSpec in
            var s = spec
            s.resolvedFiles = try datasetFiles(spec)
            return s
        }
        let key = try Self.key(resolved, builder: builder)
        let dir = root + "/" + key
        if FileManager.default.fileExists(atPath: dir + "/meta.json"), let shards = try? TokenShards(directory: dir) {
            if builder.options.refuseOnProblems, let p = shards.meta.problems.first { throw p.error }
            return shards
        }
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let tmp = dir + ".partial-\(getpid())"
        try? FileManager.default.removeItem(atPath: tmp)
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        var committed = false
        defer { if !committed { try? FileManager.default.removeItem(atPath: tmp) } }
        let writer = try ShardWriter(directory: tmp)
        var meta = TokenCacheMeta(version: Self.formatVersion, key: key)
        let totalBytes = resolved.flatMap { $0.resolvedFiles ?? [] }.reduce(Int64(0)) { $0 + Self.fileSize($1) }
        var done = Progress(entry: 0, entries: specs.count, rows: 0, examples: 0, tokens: 0, bytes: 0, totalBytes: totalBytes, seconds: 0)
        let start = Date()
        var bytesBefore: Int64 = 0
        for (k, spec) in resolved.enumerated() {
            done.entry = k
            var count = 0
            builder.rowProgress = { file, bytes, rows in
                done.rows = rows
                done.bytes = bytesBefore + bytes
                done.seconds = Date().timeIntervalSince(start)
                progress?(done)
            }
            defer { builder.rowProgress = nil }
            let (_, _, stats, warnings, problems) = try builder.buildOne(spec) { example, origin in
                try writer.append(example, entry: k, origin: origin)
                count += 1
                done.examples += 1
                done.tokens += example.ids.count
            }
            bytesBefore += (spec.resolvedFiles ?? []).reduce(Int64(0)) { $0 + Self.fileSize($1) }
            meta.entries.append(TokenCacheMeta.Entry(examples: count, stats: stats, weight: spec.weight))
            meta.warnings += warnings
            meta.problems += problems.map(TokenCacheMeta.Problem.init)
        }
        done.bytes = totalBytes
        done.seconds = Date().timeIntervalSince(start)
        progress?(done)
        meta.files = writer.files
        meta.shards = writer.shardCount
        meta.examples = writer.count
        try writer.finish()
        if builder.options.refuseOnProblems, let p = meta.problems.first { throw p.error }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(meta).write(to: URL(fileURLWithPath: tmp + "/meta.json"))
        // Whole or not at all: a finished cache appears under its key in one rename.
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.moveItem(atPath: tmp, toPath: dir)
        committed = true
        return try TokenShards(directory: dir)
    }

    static func fileSize(_ path: String) -> Int64 {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.int64Value ?? 0
    }

    /// The cache key (hex SHA-256) of the entries (with their files resolved) under a builder.
    public static func key(_ specs: [DatasetSpec], builder: DatasetBuilder) throws -> String {
        var h = SHA256()
        func put(_ s: String) { h.update(Array(s.utf8) + [0]) }
        func put(_ dict: [String: String]?) { for (k, v) in (dict ?? [:]).sorted(by: { $0.key < $1.key }) { put(k); put(v) } ; put("|") }
        put("loft-token-cache-\(formatVersion)")
        for spec in specs {
            put(spec.path); put(spec.type ?? "-"); put(spec.fieldMap); put(spec.roleMap); put(spec.variables)
            put(spec.name ?? "-"); put(spec.split ?? "-"); put(spec.revision ?? "-"); put((spec.dataFiles ?? []).joined(separator: ","))
            for file in spec.resolvedFiles ?? [] { put(file); put(try fingerprint(file)) }
        }
        let tok = builder.tokenizer
        put(tok.source); put("\(tok.vocabularySize)"); put("\(tok.bosTokenID ?? -1)"); put("\(tok.eosTokenID ?? -1)")
        if FileManager.default.fileExists(atPath: tok.source) { put(try fingerprint(tok.source)) }
        let probe = "Hello, world! Grüße 👋 123 <|im_start|> <s> </s> \n\t  tokens"
        put(tok.encode(probe, addSpecialTokens: true).map(String.init).joined(separator: ","))
        put(builder.templateSource ?? "-")
        let o = builder.options
        put("\(o.sequenceLen) \(o.truncation.rawValue) \(o.trainOnInputs) \(o.rolesToTrain) \(o.trainOnEOS.rawValue) \(o.lastTurnOnly) \(o.chatTemplate ?? "-") \(o.skipBadRows) \(o.maxRows ?? -1) \(o.maxMaskedRowShare) \(o.maxTruncatedShare)")
        return SHA256.hex(h.finalize())
    }

    /// A file's size, modification time and sampled contents (hashing every byte
    /// of a many-GB dataset would cost a minute each run).
    static func fingerprint(_ path: String) throws -> String {
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        let size = (attributes[.size] as? NSNumber)?.int64Value ?? 0
        let modified = (attributes[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
        var h = SHA256()
        h.update(Array("\(size) \(modified)".utf8))
        guard let handle = FileHandle(forReadingAtPath: path) else { throw DataError(file: path, "cannot open the file", fix: "check that it is readable") }
        defer { try? handle.close() }
        let block: Int64 = 1 << 16
        var offsets: Set<Int64> = [0, max(0, size - block)]
        for i in 1...64 { offsets.insert(size * Int64(i) / 65) }
        for off in offsets.sorted() where off < size {
            try handle.seek(toOffset: UInt64(off))
            h.update([UInt8](try handle.read(upToCount: Int(block)) ?? Data()))
        }
        return SHA256.hex(h.finalize())
    }
}

/// What a finished cache holds besides the shards.
public struct TokenCacheMeta: Codable, Sendable {
    public struct Entry: Codable, Sendable {
        public var examples: Int
        public var stats: DatasetStats
        public var weight: Double?
    }
    public struct Problem: Codable, Sendable {
        public var file: String?, row: Int?, field: String?, message: String, fix: String?
        init(_ e: DataError) { (file, row, field, message, fix) = (e.file, e.row, e.field, e.message, e.fix) }
        public var error: DataError { DataError(file: file, row: row, field: field, message, fix: fix) }
    }
    public var version: Int
    public var key: String
    public var entries: [Entry] = []
    public var warnings: [String] = []
    public var problems: [Problem] = []
    public var files: [String] = []
    public var shards = 0
    public var examples = 0
}

/// Writes examples into shard files through a buffer.
final class ShardWriter {
    static let shardBytes = 256 << 20
    static let recordSize = 32
    let directory: String
    private(set) var files: [String] = []
    private var fileIndex: [String: Int] = [:]
    private(set) var shardCount = 0
    private(set) var count = 0
    private var shard: FileHandle?
    private var shardSize = 0
    private var buffer: [UInt8] = []
    private let index: FileHandle
    private var indexBuffer: [UInt8] = []

    init(directory: String) throws {
        self.directory = directory
        _ = FileManager.default.createFile(atPath: directory + "/index.bin", contents: nil)
        guard let h = FileHandle(forWritingAtPath: directory + "/index.bin") else {
            throw DataError(file: directory, "cannot write the token cache", fix: "check the permissions and free space of the cache directory (LOFT_CACHE)")
        }
        index = h
        buffer.reserveCapacity(1 << 20)
    }

    static func shardPath(_ directory: String, _ n: Int) -> String { directory + "/" + String(format: "shard-%05d.bin", n) }

    func append(_ e: TokenizedExample, entry: Int, origin: ExampleOrigin) throws {
        if shard == nil || shardSize >= Self.shardBytes {
            try flush()
            try shard?.close()
            let path = Self.shardPath(directory, shardCount)
            _ = FileManager.default.createFile(atPath: path, contents: nil)
            guard let h = FileHandle(forWritingAtPath: path) else {
                throw DataError(file: path, "cannot write the token cache", fix: "check the permissions and free space of the cache directory (LOFT_CACHE)")
            }
            shard = h
            shardCount += 1
            shardSize = 0
        }
        let file: Int
        if let f = fileIndex[origin.file] { file = f } else { file = files.count; fileIndex[origin.file] = file; files.append(origin.file) }
        putRecord(shard: shardCount - 1, offset: shardSize, length: e.ids.count, entry: entry, file: file, row: origin.row)
        for v in e.ids { put32(&buffer, UInt32(bitPattern: v)) }
        for v in e.labels { put32(&buffer, UInt32(bitPattern: v)) }
        shardSize += 8 * e.ids.count
        count += 1
        if buffer.count >= 1 << 20 { try flush() }
    }

    private func putRecord(shard: Int, offset: Int, length: Int, entry: Int, file: Int, row: Int) {
        put32(&indexBuffer, UInt32(shard))
        put32(&indexBuffer, UInt32(truncatingIfNeeded: offset)); put32(&indexBuffer, UInt32(truncatingIfNeeded: offset >> 32))
        put32(&indexBuffer, UInt32(length))
        put32(&indexBuffer, UInt32(entry))
        put32(&indexBuffer, UInt32(file))
        put32(&indexBuffer, UInt32(truncatingIfNeeded: row)); put32(&indexBuffer, UInt32(truncatingIfNeeded: row >> 32))
    }

    private func flush() throws {
        if let shard, !buffer.isEmpty { try shard.write(contentsOf: buffer); buffer.removeAll(keepingCapacity: true) }
        if !indexBuffer.isEmpty { try index.write(contentsOf: indexBuffer); indexBuffer.removeAll(keepingCapacity: true) }
    }

    func finish() throws {
        try flush()
        try shard?.synchronize()
        try shard?.close()
        try index.synchronize()
        try index.close()
    }
}

@inline(__always) func put32(_ b: inout [UInt8], _ v: UInt32) {
    b.append(UInt8(v & 0xff)); b.append(UInt8((v >> 8) & 0xff)); b.append(UInt8((v >> 16) & 0xff)); b.append(UInt8(v >> 24))
}

@inline(__always) func get32(_ b: UnsafeRawBufferPointer, _ at: Int) -> UInt32 {
    UInt32(b[at]) | UInt32(b[at + 1]) << 8 | UInt32(b[at + 2]) << 16 | UInt32(b[at + 3]) << 24
}

/// A finished cache, read with positioned reads: nothing is held in memory but
/// what a caller asks for.
public final class TokenShards: @unchecked Sendable {   // reads go through `lock`
    public let directory: String
    public let meta: TokenCacheMeta
    public var count: Int { meta.examples }
    private let index: FileHandle
    private var shards: [FileHandle] = []
    /// A read is a seek then a read on a shared handle.
    private let lock = NSLock()

    public init(directory: String) throws {
        self.directory = directory
        let data = try Data(contentsOf: URL(fileURLWithPath: directory + "/meta.json"))
        meta = try JSONDecoder().decode(TokenCacheMeta.self, from: data)
        guard meta.version == TokenCache.formatVersion else { throw DataError(file: directory, "a token cache of another version", fix: "delete it") }
        guard let h = FileHandle(forReadingAtPath: directory + "/index.bin"),
              TokenCache.fileSize(directory + "/index.bin") == Int64(meta.examples * ShardWriter.recordSize) else {
            throw DataError(file: directory, "the token cache's index is missing or incomplete", fix: "delete the directory; the next run rebuilds it")
        }
        index = h
        for n in 0..<meta.shards {
            guard let s = FileHandle(forReadingAtPath: ShardWriter.shardPath(directory, n)) else {
                throw DataError(file: directory, "shard \(n) of the token cache is missing", fix: "delete the directory; the next run rebuilds it")
            }
            shards.append(s)
        }
    }

    deinit {
        try? index.close()
        for s in shards { try? s.close() }
    }

    public struct Record: Sendable, Equatable {
        public var shard: Int, offset: Int, length: Int, entry: Int, file: Int, row: Int
    }

    /// Index records `range` (one read).
    public func records(_ range: Range<Int>) throws -> [Record] {
        guard !range.isEmpty else { return [] }
        precondition(range.lowerBound >= 0 && range.upperBound <= count, "record range out of bounds")
        lock.lock()
        defer { lock.unlock() }
        try index.seek(toOffset: UInt64(range.lowerBound * ShardWriter.recordSize))
        let bytes = try index.read(upToCount: range.count * ShardWriter.recordSize) ?? Data()
        guard bytes.count == range.count * ShardWriter.recordSize else {
            throw DataError(file: directory, "the token cache's index is truncated", fix: "delete the directory; the next run rebuilds it")
        }
        return bytes.withUnsafeBytes { b in
            (0..<range.count).map { i in
                let o = i * ShardWriter.recordSize
                return Record(shard: Int(get32(b, o)), offset: Int(get32(b, o + 4)) | Int(get32(b, o + 8)) << 32,
                              length: Int(get32(b, o + 12)), entry: Int(get32(b, o + 16)), file: Int(get32(b, o + 20)),
                              row: Int(get32(b, o + 24)) | Int(get32(b, o + 28)) << 32)
            }
        }
    }

    public func example(_ r: Record) throws -> TokenizedExample {
        guard r.shard < shards.count else { throw DataError(file: directory, "a record names shard \(r.shard)", fix: "delete the directory; the next run rebuilds it") }
        let h = shards[r.shard]
        lock.lock()
        let bytes: Data
        do {
            defer { lock.unlock() }
            try h.seek(toOffset: UInt64(r.offset))
            bytes = try h.read(upToCount: 8 * r.length) ?? Data()
        }
        guard bytes.count == 8 * r.length else {
            throw DataError(file: directory, "shard \(r.shard) of the token cache is truncated", fix: "delete the directory; the next run rebuilds it")
        }
        return bytes.withUnsafeBytes { b in
            TokenizedExample(ids: (0..<r.length).map { Int32(bitPattern: get32(b, 4 * $0)) },
                             labels: (0..<r.length).map { Int32(bitPattern: get32(b, 4 * (r.length + $0))) })
        }
    }

    public func example(_ i: Int) throws -> TokenizedExample { try example(records(i..<(i + 1))[0]) }

    /// Token lengths of every example (8 bytes each: what packing and batching plans need).
    public func lengths() throws -> [Int] {
        var out: [Int] = []
        out.reserveCapacity(count)
        var i = 0
        while i < count {
            let n = min(65_536, count - i)
            out += try records(i..<(i + n)).map(\.length)
            i += n
        }
        return out
    }

    /// Every example in memory, split and weighted exactly as `DatasetBuilder.build` does
    /// (with origins; `streamed` is what training takes).
    public func prepared(options: DataOptions) throws -> PreparedDataset {
        var out = PreparedDataset()
        var examples: [TokenizedExample] = []
        var origins: [ExampleOrigin] = []
        for n in try weightedRecords(options: options).records {
            let r = try records(n..<(n + 1))[0]
            examples.append(try example(r))
            origins.append(ExampleOrigin(file: r.file < meta.files.count ? meta.files[r.file] : "?", row: r.row))
        }
        out.stats = meta.entries.map(\.stats)
        out.warnings = meta.warnings
        out.problems = meta.problems.map(\.error)
        try DatasetBuilder.split(examples, origins: origins, options: options, into: &out)
        return out
    }
}

/// A seeded permutation of 0..<count computed index by index (a Feistel network
/// on the next power of four, cycle-walking into range): shuffling millions of
/// examples costs no memory, and position k of an epoch is known without the
/// ones before it, so a resumed run continues mid-epoch.
public struct SeededPermutation: Sendable {
    public let count: Int
    let halfBits: Int
    let keys: [UInt64]

    public init(count: Int, seed: UInt64) {
        self.count = count
        var bits = 2
        while (1 << bits) < count { bits += 2 }
        halfBits = bits / 2
        var rng = SplitMix64(seed: seed)
        keys = (0..<4).map { _ in rng.next() }
    }

    public subscript(_ i: Int) -> Int {
        precondition(i >= 0 && i < count, "permutation index out of range")
        var x = UInt64(i)
        repeat { x = round(x) } while x >= UInt64(count)
        return Int(x)
    }

    private func round(_ v: UInt64) -> UInt64 {
        let mask: UInt64 = (1 << UInt64(halfBits)) - 1
        var l = v >> UInt64(halfBits), r = v & mask
        for k in keys {
            var z = (r &+ k) &* 0x9E37_79B9_7F4A_7C15
            z = (z ^ (z >> 31)) &* 0xBF58_476D_1CE4_E5B9
            let f = (z ^ (z >> 29)) & mask
            (l, r) = (r, l ^ f)
        }
        return (l << UInt64(halfBits)) | r
    }
}

extension Packing {
    /// Packed bins for one epoch over examples that need not fit in memory: a
    /// seeded permutation (from seed and epoch), cut into windows of `window`
    /// examples, each packed best-fit-decreasing and its bins shuffled. Memory is
    /// O(window); window `w` depends on nothing before it, so a resumed run
    /// rebuilds just the window it stopped in.
    public static func streamingPackedWindow(_ w: Int, count: Int, window: Int, capacity: Int, seed: UInt64, epoch: Int,
                                             length: (Range<Int>, SeededPermutation) throws -> [Int]) rethrows -> [[Int]] {
        let perm = SeededPermutation(count: count, seed: seed &+ UInt64(truncatingIfNeeded: epoch) &* SplitMix64.increment)
        let lo = w * window, hi = min(count, lo + window)
        guard lo < hi else { return [] }
        let indices = (lo..<hi).map { perm[$0] }
        let lengths = try length(lo..<hi, perm)
        var bins = bestFitDecreasing(lengths: lengths, capacity: capacity).map { $0.map { indices[$0] } }
        var rng = SplitMix64(seed: seed &+ UInt64(w) &* 0x9E37_79B9 &+ UInt64(truncatingIfNeeded: epoch))
        bins.shuffle(using: &rng)
        return bins
    }
}

extension TokenShards {
    /// The packed bins of window `w` of an epoch (see `Packing.streamingPackedWindow`).
    public func packedWindow(_ w: Int, window: Int = 8192, capacity: Int, seed: UInt64, epoch: Int) throws -> [[Int]] {
        try Packing.streamingPackedWindow(w, count: count, window: window, capacity: capacity, seed: seed, epoch: epoch) { range, perm in
            try range.map { try records(perm[$0]..<(perm[$0] + 1))[0].length }
        }
    }
}

/// A one-line display of the tokenizing pass: rows, share of the bytes, rate and time left.
public final class TokenCacheProgressLine: @unchecked Sendable {
    var last = Date.distantPast
    public init() {}

    public func update(_ p: TokenCache.Progress) {
        let now = Date()
        let finished = p.bytes >= p.totalBytes
        guard finished || now.timeIntervalSince(last) >= 0.2 else { return }
        last = now
        let share = p.totalBytes > 0 ? Double(p.bytes) / Double(p.totalBytes) : 1
        let rate = p.seconds > 0 ? Double(p.rows) / p.seconds : 0
        let eta = share > 0 && !finished ? p.seconds * (1 - share) / share : 0
        let line = String(format: "\rtokenizing dataset %d/%d: %d rows, %d examples, %d tokens  %3.0f%%  %.0f rows/s  ETA %.0fs",
                          p.entry + 1, p.entries, p.rows, p.examples, p.tokens, 100 * share, rate, eta)
        FileHandle.standardError.write(Data((line + (finished ? "\n" : "")).utf8))
    }
}
