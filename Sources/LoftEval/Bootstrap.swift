import Foundation
import LoftFormats

/// Seeded resampling over items. A paired bootstrap draws the same item
/// indices for both models, so the interval is of the difference on the same
/// questions (what sacreBLEU's `paired_bs` and Koehn 2004 do).
public struct Bootstrap: Sendable {
    public var resamples: Int
    public var seed: UInt64

    public init(resamples: Int = 1000, seed: UInt64 = 0) { self.resamples = resamples; self.seed = seed }

    /// The index lists of every resample of `n` items (the same for every metric and model pair).
    public func indexSets(count n: Int) -> [[Int]] {
        var rng = SplitMix64(seed: seed)
        return (0 ..< resamples).map { _ in (0 ..< n).map { _ in Int(rng.next() % UInt64(n)) } }
    }

    /// numpy's default percentile: linear interpolation between closest ranks.
    public static func percentile(_ sorted: [Double], _ q: Double) -> Double {
        guard !sorted.isEmpty else { return .nan }
        let pos = q / 100 * Double(sorted.count - 1)
        let lo = Int(pos.rounded(.down)), hi = min(lo + 1, sorted.count - 1)
        return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - Double(lo))
    }

    /// 95% interval of `metric(b) − metric(a)` over paired resamples.
    public func pairedInterval(_ metric: Metric, a: [[Double]], b: [[Double]], indexSets: [[Int]]) -> (low: Double, high: Double) {
        let diffs = indexSets.map { idx in metric.aggregate(b, indices: idx) - metric.aggregate(a, indices: idx) }
            .filter { $0.isFinite }.sorted()
        return (Self.percentile(diffs, 2.5), Self.percentile(diffs, 97.5))
    }

    /// Standard error: lm-eval's `mean_stderr` (sample standard deviation over
    /// √n) for mean metrics, the bootstrap standard deviation for corpus ones.
    public func standardError(_ metric: Metric, _ stats: [[Double]], indexSets: [[Int]]) -> Double {
        let n = stats.count
        guard n > 1 else { return .nan }
        if !metric.isCorpus {
            let values = stats.map { $0[0] }
            let mean = values.reduce(0, +) / Double(n)
            let variance = values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(n - 1)
            return (variance / Double(n)).squareRoot()
        }
        let values = indexSets.map { metric.aggregate(stats, indices: $0) }.filter { $0.isFinite }
        guard values.count > 1 else { return .nan }
        let mean = values.reduce(0, +) / Double(values.count)
        return (values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(values.count - 1)).squareRoot()
    }
}
