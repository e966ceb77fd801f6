import Foundation

/// The examples a trainer reads by position: held in memory, or left on disk
/// in a token cache, where the set keeps only each example's record number and
/// length (16 bytes an example) and reads an example's ids and labels when a
/// micro-batch asks for it. Training memory then stays flat in the dataset's
/// size: what grows is this index, not the tokens.
public struct ExampleSet: @unchecked Sendable {   // TokenShards reads under its own lock
    private enum Storage {
        case memory([TokenizedExample])
        case shards(TokenShards, records: [Int])
    }
    private let storage: Storage
    /// Token count of each example (what batching and packing plans need).
    public let lengths: [Int]

    public init(_ examples: [TokenizedExample]) {
        storage = .memory(examples)
        lengths = examples.map(\.ids.count)
    }

    /// Examples `records` (record numbers of `shards`, in this order) with their lengths.
    init(shards: TokenShards, records: [Int], lengths: [Int]) {
        precondition(records.count == lengths.count, "one length per record")
        storage = .shards(shards, records: records)
        self.lengths = lengths
    }

    public var count: Int { lengths.count }
    public var isEmpty: Bool { lengths.isEmpty }
    /// True when the examples are read from a token cache on disk.
    public var isOnDisk: Bool { if case .shards = storage { return true } else { return false } }

    /// Example `i` (a read of its record and its tokens when on disk).
    public func example(_ i: Int) throws -> TokenizedExample {
        switch storage {
        case .memory(let all): return all[i]
        case .shards(let shards, let records): return try shards.example(records[i])
        }
    }

    /// Every example, in order (for small sets: validation, tests).
    public func all() throws -> [TokenizedExample] {
        switch storage {
        case .memory(let all): return all
        case .shards: return try (0..<count).map(example)
        }
    }
}

/// A dataset split for training whose training examples stay in the token
/// cache on disk (`TokenShards.streamed`), with what `loft train` reports of it.
public struct StreamedDataset: Sendable {
    public var train: ExampleSet
    /// The validation split, in memory (it is evaluated whole at every eval step).
    public var validation: [TokenizedExample]
    public var stats: [DatasetStats] = []
    public var warnings: [String] = []
    public var problems: [DataError] = []
    /// SHA-256 (hex) of every example's ids and labels, train then validation:
    /// equal to `PreparedDataset.hash` of the same data.
    public var hash = ""
    /// Tokens of the training split whose label is trained.
    public var trainedTokens = 0
}

extension TokenShards {
    /// Writes `examples` as a one-entry token cache in `directory` (which must
    /// not exist) and opens it: examples a program made itself, read from disk.
    public static func write(_ examples: [TokenizedExample], to directory: String, source: String = "examples") throws -> TokenShards {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
        let writer = try ShardWriter(directory: directory)
        for (i, e) in examples.enumerated() { try writer.append(e, entry: 0, origin: ExampleOrigin(file: source, row: i + 1)) }
        try writer.finish()
        var meta = TokenCacheMeta(version: TokenCache.formatVersion, key: "written")
        var stats = DatasetStats(path: source)
        stats.rows = examples.count
        meta.entries = [TokenCacheMeta.Entry(examples: examples.count, stats: stats, weight: nil)]
        meta.files = writer.files
        meta.shards = writer.shardCount
        meta.examples = writer.count
        try JSONEncoder().encode(meta).write(to: URL(fileURLWithPath: directory + "/meta.json"))
        return try TokenShards(directory: directory)
    }

    /// The record numbers of every entry in order, each entry's weight applied
    /// as `DatasetBuilder.build` applies it (the split comes after), and the
    /// length of every record.
    func weightedRecords(options: DataOptions) throws -> (records: [Int], lengths: [Int32]) {
        var perEntry = [[Int]](repeating: [], count: meta.entries.count)
        var lengths = [Int32](repeating: 0, count: count)
        var i = 0
        while i < count {
            let n = min(65_536, count - i)
            for (k, r) in try records(i..<(i + n)).enumerated() {
                guard r.entry < perEntry.count else {
                    throw DataError(file: directory, "a record names dataset entry \(r.entry)", fix: "delete the directory; the next run rebuilds it")
                }
                perEntry[r.entry].append(i + k)
                lengths[i + k] = Int32(clamping: r.length)
            }
            i += n
        }
        var picked: [Int] = []
        for (k, entry) in meta.entries.enumerated() {
            if let w = entry.weight, w != 1 {
                picked += DatasetBuilder.weightedIndices(count: perEntry[k].count, weight: w, seed: options.seed &+ UInt64(k)).map { perEntry[k][$0] }
            } else {
                picked += perEntry[k]
            }
            perEntry[k] = []
        }
        return (picked, lengths)
    }

    /// The examples split and weighted exactly as `prepared` (and
    /// `DatasetBuilder.build`) does, with the training split left on disk.
    /// One pass over the shards computes the content hash; memory holds the
    /// record numbers and lengths, and the validation split.
    public func streamed(options: DataOptions) throws -> StreamedDataset {
        let (picked, lengthOf) = try weightedRecords(options: options)
        let isVal = try DatasetBuilder.validationMask(count: picked.count, options: options)
        var trainRecords: [Int] = [], validationRecords: [Int] = []
        trainRecords.reserveCapacity(picked.count)
        for (j, r) in picked.enumerated() {
            if isVal[j] { validationRecords.append(r) } else { trainRecords.append(r) }
        }
        var out = StreamedDataset(train: ExampleSet(shards: self, records: trainRecords, lengths: trainRecords.map { Int(lengthOf[$0]) }),
                                  validation: try validationRecords.map(example))
        var hash = DatasetContentHash()
        hash.begin(train: true)
        for j in 0..<out.train.count {
            let e = try out.train.example(j)
            hash.add(e)
            out.trainedTokens += e.trainedTokenCount
        }
        hash.begin(train: false)
        for e in out.validation { hash.add(e) }
        out.hash = hash.hex()
        out.stats = meta.entries.map(\.stats)
        out.warnings = meta.warnings
        out.problems = meta.problems.map(\.error)
        return out
    }
}
