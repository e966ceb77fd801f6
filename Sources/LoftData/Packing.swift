import LoftFormats

/// Packing and batching of examples by length.
public enum Packing {
    /// Best-fit-decreasing bin packing: examples longest first, each into the bin
    /// whose free space is the smallest that still holds it (ties: the earliest
    /// bin), else a new bin. Returns bins of example indices, each bin's indices
    /// in the order they were placed. An example longer than `capacity` gets a bin of its own.
    public static func bestFitDecreasing(lengths: [Int], capacity: Int) -> [[Int]] {
        guard capacity > 0 else { return lengths.indices.map { [$0] } }
        let order = lengths.indices.sorted { lengths[$0] != lengths[$1] ? lengths[$0] > lengths[$1] : $0 < $1 }
        var bins: [[Int]] = []
        // free[r] = bins with exactly r tokens free (ascending bin ids); a segment tree
        // over r finds the smallest r ≥ length with a bin in O(log capacity).
        // Each list is a min-heap of bin ids, so taking the earliest bin costs
        // O(log n) however many bins share a free count (millions of examples).
        var free = [MinHeap](repeating: MinHeap(), count: capacity + 1)
        var size = 1
        while size < capacity + 1 { size *= 2 }
        var tree = [Int](repeating: 0, count: 2 * size)
        func add(_ r: Int, _ d: Int) {
            var i = r + size
            tree[i] += d
            i /= 2
            while i >= 1 { tree[i] = tree[2 * i] + tree[2 * i + 1]; i /= 2 }
        }
        /// The smallest r ≥ x with a bin, or nil.
        func firstAtLeast(_ x: Int) -> Int? {
            func go(_ node: Int, _ lo: Int, _ hi: Int) -> Int? {
                if hi < x || tree[node] == 0 { return nil }
                if lo == hi { return lo }
                let mid = (lo + hi) / 2
                return go(2 * node, lo, mid) ?? go(2 * node + 1, mid + 1, hi)
            }
            return go(1, 0, size - 1)
        }
        for i in order {
            let len = max(0, lengths[i])
            if len > capacity { bins.append([i]); continue }
            if let r = firstAtLeast(len) {
                // Earliest bin among those with r free.
                let b = free[r].popMin()
                add(r, -1)
                bins[b].append(i)
                let nr = r - len
                free[nr].push(b)
                add(nr, 1)
            } else {
                bins.append([i])
                let nr = capacity - len
                free[nr].push(bins.count - 1)
                add(nr, 1)
            }
        }
        return bins
    }

    /// Packed micro-batches for one epoch: best-fit-decreasing bins of at most
    /// `capacity` tokens, visited in an order shuffled from (seed, epoch) alone, so a
    /// resumed run rebuilds the same plan. The bins themselves do not change between epochs.
    public static func packedMicroBatches(lengths: [Int], capacity: Int, seed: UInt64, epoch: Int) -> [[Int]] {
        var bins = bestFitDecreasing(lengths: lengths, capacity: capacity)
        var rng = SplitMix64(seed: seed &+ UInt64(truncatingIfNeeded: epoch) &* SplitMix64.increment)
        bins.shuffle(using: &rng)
        return bins
    }

    /// Share of the bins' token slots that hold tokens: Σ lengths / (bins × capacity).
    public static func efficiency(lengths: [Int], bins: [[Int]], capacity: Int) -> Double {
        guard !bins.isEmpty, capacity > 0 else { return 0 }
        let used = bins.reduce(0) { $0 + $1.reduce(0) { $0 + min(capacity, lengths[$1]) } }
        return Double(used) / Double(bins.count * capacity)
    }

    /// Batches of `batchSize` examples of similar length (without packing): a seeded
    /// shuffle, then within mega-batches of 50 batches a sort by length, longest first,
    /// and the batches themselves shuffled; every index appears exactly once.
    public static func lengthGroupedBatches(lengths: [Int], batchSize: Int, seed: UInt64) -> [[Int]] {
        let bs = max(1, batchSize)
        var rng = SplitMix64(seed: seed)
        var order = Array(lengths.indices)
        order.shuffle(using: &rng)
        var batches: [[Int]] = []
        let mega = bs * 50
        var i = 0
        while i < order.count {
            let chunk = order[i..<min(order.count, i + mega)].sorted { lengths[$0] != lengths[$1] ? lengths[$0] > lengths[$1] : $0 < $1 }
            var j = 0
            while j < chunk.count { batches.append(Array(chunk[j..<min(chunk.count, j + bs)])); j += bs }
            i += mega
        }
        batches.shuffle(using: &rng)
        return batches
    }
}

extension PreparedDataset {
    /// Packing efficiency of the training examples at `capacity` tokens per bin (best-fit decreasing).
    public func packingEfficiency(capacity: Int) -> Double {
        let lengths = train.map(\.ids.count)
        return Packing.efficiency(lengths: lengths, bins: Packing.bestFitDecreasing(lengths: lengths, capacity: capacity), capacity: capacity)
    }
}

/// A binary min-heap of Ints (bin ids for best-fit packing).
struct MinHeap {
    private var items: [Int] = []
    var isEmpty: Bool { items.isEmpty }

    mutating func push(_ v: Int) {
        items.append(v)
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard items[parent] > items[i] else { break }
            items.swapAt(parent, i)
            i = parent
        }
    }

    /// Removes and returns the smallest item; the heap must not be empty.
    mutating func popMin() -> Int {
        let top = items[0]
        let last = items.removeLast()
        guard !items.isEmpty else { return top }
        items[0] = last
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < items.count && items[l] < items[m] { m = l }
            if r < items.count && items[r] < items[m] { m = r }
            if m == i { break }
            items.swapAt(i, m)
            i = m
        }
        return top
    }
}
