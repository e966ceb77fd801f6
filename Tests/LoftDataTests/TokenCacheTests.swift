import Foundation
import LoftFormats
import XCTest
@testable import LoftData

/// The token cache: the same examples as `build`, reuse keyed by data and
/// options, seeded order and packing without holding the data, and a flat
/// memory profile on a large generated file.
final class TokenCacheTests: XCTestCase {
    func tempDir() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("loft-cache-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        return dir
    }

    func testShardsHoldExactlyWhatBuildMakesAndAreReused() throws {
        let root = try tempDir()
        var o = DataOptions(sequenceLen: 1024)
        o.valSetSize = 0.1
        o.maxRows = 120
        let specs = [DatasetSpec(path: Shared.dataset("alpaca_en_demo.json")),
                     DatasetSpec(path: TestPaths.fixtures.appendingPathComponent("parquet/conversations.parquet").path, weight: 2)]
        let builder = try DatasetBuilder(tokenizer: Shared.tokenizer, options: o)
        let reference = try builder.build(specs)
        var calls = 0
        let cache = TokenCache(root: root)
        let shards = try cache.shards(specs, builder: builder) { _ in calls += 1 }
        XCTAssertGreaterThan(calls, 0, "progress is reported")
        XCTAssertEqual(shards.count, 135)
        let loaded = try shards.prepared(options: o)
        XCTAssertEqual(loaded.train, reference.train)
        XCTAssertEqual(loaded.validation, reference.validation)
        XCTAssertEqual(loaded.trainOrigins, reference.trainOrigins)
        XCTAssertEqual(loaded.hash, reference.hash)
        XCTAssertEqual(loaded.stats, reference.stats)
        XCTAssertEqual(try shards.lengths(), (0..<shards.count).map { try! shards.example($0).ids.count })
        // Streamed: the same split, order and hash with the training split left on disk.
        let streamed = try shards.streamed(options: o)
        XCTAssertTrue(streamed.train.isOnDisk)
        XCTAssertEqual(try streamed.train.all(), reference.train)
        XCTAssertEqual(streamed.train.lengths, reference.train.map(\.ids.count))
        XCTAssertEqual(streamed.validation, reference.validation)
        XCTAssertEqual(streamed.hash, reference.hash)
        XCTAssertEqual(streamed.trainedTokens, reference.train.reduce(0) { $0 + $1.trainedTokenCount })
        XCTAssertEqual(streamed.stats, reference.stats)

        // Same inputs: opened, not rebuilt (no progress, same directory).
        calls = 0
        let again = try cache.shards(specs, builder: builder) { _ in calls += 1 }
        XCTAssertEqual(calls, 0)
        XCTAssertEqual(again.directory, shards.directory)
        // A different split or seed reuses the cache too; other options or data do not.
        var split = o
        split.valSetSize = 0.3
        split.seed = 7
        XCTAssertEqual(try cache.shards(specs, builder: DatasetBuilder(tokenizer: Shared.tokenizer, options: split)).directory, shards.directory)
        var longer = o
        longer.sequenceLen = 512
        XCTAssertNotEqual(try cache.shards(specs, builder: DatasetBuilder(tokenizer: Shared.tokenizer, options: longer)).directory, shards.directory)
        let copy = root + "/copy.jsonl"
        try FileManager.default.copyItem(atPath: TestPaths.fixtures.appendingPathComponent("parquet/conversations.jsonl").path, toPath: copy)
        let before = try cache.shards([DatasetSpec(path: copy)], builder: builder)
        try (try String(contentsOfFile: copy, encoding: .utf8) + #"{"messages": [{"role": "user", "content": "One more?"}, {"role": "assistant", "content": "Yes."}]}"# + "\n")
            .write(toFile: copy, atomically: true, encoding: .utf8)
        let after = try cache.shards([DatasetSpec(path: copy)], builder: builder)
        XCTAssertNotEqual(after.directory, before.directory, "changed data, new key")
        XCTAssertEqual(after.count, before.count + 1)
    }

    func testRefusedDataIsNotCached() throws {
        let root = try tempDir()
        let builder = try DatasetBuilder(tokenizer: Shared.tokenizer, options: DataOptions(sequenceLen: 512))
        XCTAssertThrowsError(try TokenCache(root: root).shards([DatasetSpec(path: TestPaths.fixtures.appendingPathComponent("strict_rows.jsonl").path)], builder: builder)) { e in
            XCTAssertTrue("\(e)".contains("row 2"), "\(e)")
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: root), [])
    }

    func testSeededPermutationIsAPermutationAndResumable() {
        for n in [1, 2, 3, 17, 1000, 4097] {
            let p = SeededPermutation(count: n, seed: 42)
            let all = (0..<n).map { p[$0] }
            XCTAssertEqual(Set(all).count, n)
            XCTAssertEqual(all.min(), 0)
            XCTAssertEqual(all.max(), n - 1)
            XCTAssertEqual(SeededPermutation(count: n, seed: 42)[n / 2], all[n / 2], "position k needs nothing before it")
        }
        let a = (0..<1000).map { SeededPermutation(count: 1000, seed: 1)[$0] }
        let b = (0..<1000).map { SeededPermutation(count: 1000, seed: 2)[$0] }
        XCTAssertNotEqual(a, b)
        XCTAssertNotEqual(a, Array(0..<1000))
    }

    func testStreamingPackingCoversEveryExampleOnceWithinCapacity() {
        var rng = SplitMix64(seed: 99)
        let lengths = (0..<5000).map { _ in 1 + Int(rng.next() % 700) }
        var seen: [Int] = []
        var bins = 0
        for w in 0..<3 {
            let window = Packing.streamingPackedWindow(w, count: lengths.count, window: 2048, capacity: 1024, seed: 5, epoch: 1) { range, perm in
                range.map { lengths[perm[$0]] }
            }
            for bin in window {
                XCTAssertLessThanOrEqual(bin.reduce(0) { $0 + lengths[$1] }, 1024)
                seen += bin
            }
            bins += window.count
            // Resuming: the same window again is the same bins.
            let again = Packing.streamingPackedWindow(w, count: lengths.count, window: 2048, capacity: 1024, seed: 5, epoch: 1) { range, perm in
                range.map { lengths[perm[$0]] }
            }
            XCTAssertEqual(again, window)
        }
        XCTAssertEqual(seen.sorted(), Array(0..<5000))
        let efficiency = Double(lengths.reduce(0, +)) / Double(bins * 1024)
        XCTAssertGreaterThan(efficiency, 0.9, "windows of 2048 pack nearly as well as the whole")
        let otherEpoch = Packing.streamingPackedWindow(0, count: lengths.count, window: 2048, capacity: 1024, seed: 5, epoch: 2) { range, perm in
            range.map { lengths[perm[$0]] }
        }
        XCTAssertNotEqual(otherEpoch.first, Packing.streamingPackedWindow(0, count: lengths.count, window: 2048, capacity: 1024, seed: 5, epoch: 1) { range, perm in
            range.map { lengths[perm[$0]] }
        }.first)
    }

    /// The streaming pass over a generated JSONL holds no example: the peak
    /// resident memory it adds stays under 80 MB for a 100 MB file whose
    /// examples alone take about 190 MB as Int32 ids and labels (checked below,
    /// so that holding them would fail the bound).
    func testMemoryStaysFlatOnALargeFile() throws {
        let dir = try tempDir()
        let path = dir + "/large.jsonl"
        // ~100 MB of raw-text rows (short repeated words tokenize fast; the point is the size).
        let words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"]
        FileManager.default.createFile(atPath: path, contents: nil)
        let h = FileHandle(forWritingAtPath: path)!
        var rng = SplitMix64(seed: 3)
        var chunk = ""
        var rows = 0
        while TokenCache.fileSize(path) < 100_000_000 {
            for _ in 0..<2000 {
                let text = (0..<120).map { _ in words[Int(rng.next() % 10)] }.joined(separator: " ")
                chunk += "{\"text\": \"\(text)\"}\n"
                rows += 1
            }
            h.write(Data(chunk.utf8))
            chunk = ""
        }
        try h.close()
        let builder = try DatasetBuilder(tokenizer: Shared.tokenizer, options: DataOptions(sequenceLen: 256))
        let baseline = ResidentMemory.current()
        let sampler = ResidentMemory.Sampler()
        let shards = try TokenCache(root: dir + "/cache").shards([DatasetSpec(path: path)], builder: builder)
        let peak = sampler.stop()
        XCTAssertEqual(shards.count, rows)
        let added = peak - baseline
        let held = try shards.lengths().reduce(0, +) * 8
        print("token cache: \(rows) rows, \(TokenCache.fileSize(path) / 1_000_000) MB of JSONL, \(held / 1_000_000) MB of examples; peak RSS added \(added / 1_000_000) MB")
        XCTAssertGreaterThan(held, 150_000_000, "the examples must not fit the bound")
        XCTAssertLessThan(added, 80_000_000, "the streaming pass holds the data in memory")

        // What training holds: the split's record numbers and lengths, not the
        // tokens; reading an epoch's examples a micro-batch at a time adds nothing.
        var o = DataOptions(sequenceLen: 256)
        o.valSetSize = 16
        let before = ResidentMemory.current()
        let trainSampler = ResidentMemory.Sampler()
        let streamed = try shards.streamed(options: o)
        var tokens = 0
        for i in stride(from: 0, to: streamed.train.count, by: 97) { tokens += try streamed.train.example(i).ids.count }
        let trainPeak = trainSampler.stop()
        XCTAssertEqual(streamed.train.count + streamed.validation.count, rows)
        XCTAssertGreaterThan(tokens, 0)
        print("streamed split: \(streamed.train.count) training examples on disk; peak RSS added \((trainPeak - before) / 1_000_000) MB")
        XCTAssertLessThan(trainPeak - before, 80_000_000, "the streamed split holds the examples in memory")
    }
}

/// The process's resident memory from /proc/self/statm.
enum ResidentMemory {
    static func current() -> Int {
        guard let s = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let fields = s.split(separator: " ")
        return fields.count > 1 ? (Int(fields[1]) ?? 0) * Int(sysconf(Int32(_SC_PAGESIZE))) : 0
    }

    /// Samples the resident memory every 20 ms on a thread until stopped; the peak.
    final class Sampler: @unchecked Sendable {
        private var peak = 0
        private var running = true
        private let lock = NSLock()
        private let done = DispatchSemaphore(value: 0)

        init() {
            Thread.detachNewThread { [self] in
                while true {
                    let now = ResidentMemory.current()
                    lock.lock()
                    peak = max(peak, now)
                    let go = running
                    lock.unlock()
                    if !go { break }
                    Thread.sleep(forTimeInterval: 0.02)
                }
                done.signal()
            }
        }

        func stop() -> Int {
            lock.lock(); running = false; lock.unlock()
            done.wait()
            return max(peak, ResidentMemory.current())
        }
    }
}
