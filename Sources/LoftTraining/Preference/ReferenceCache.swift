import Foundation
import LoftData

/// Reference log-probs computed once (TRL's `precompute_ref_log_probs`) and
/// kept on disk, keyed by what determines them: the tokenized examples
/// (so the data, template and tokenizer), the base model and the starting
/// adapter. A second run, or a resumed one, reads them instead of running
/// the reference pass again.
public struct ReferenceCache: Codable, Sendable {
    public enum Split: Sendable { case train, validation }
    public var key: String
    /// Per example: chosen (or the KTO completion), then rejected (absent for KTO).
    public var train: [[Double]]
    public var validation: [[Double]]

    /// The cache key: SHA-256 over the examples' ids and the hashes of base and starting adapter.
    public static func key(train: [PreferenceExample], validation: [PreferenceExample], baseHash: String, adapterHash: String?) -> String {
        var h = SHA256()
        func put(_ s: String) { h.update(Array(s.utf8) + [0]) }
        put("loft-reference-v1"); put(baseHash); put(adapterHash ?? "none")
        for (tag, set) in [("T", train), ("V", validation)] {
            put(tag)
            for e in set {
                for part in [e.prompt, e.chosen, e.rejected] {
                    put(String(part.count))
                    h.update(part.flatMap { v -> [UInt8] in let u = UInt32(bitPattern: v); return [UInt8(u & 0xff), UInt8(u >> 8 & 0xff), UInt8(u >> 16 & 0xff), UInt8(u >> 24)] })
                }
                put(e.label.map { $0 ? "1" : "0" } ?? "-")
            }
        }
        return h.finalize().map { String(format: "%02x", $0) }.joined()
    }

    /// ~/.cache/loft/reference (LOFT_CACHE moves it, as it moves the models).
    public static var directory: String {
        let root = ProcessInfo.processInfo.environment["LOFT_CACHE"].map { $0 }
            ?? (NSHomeDirectory() + "/.cache/loft")
        return root + "/reference"
    }

    public static func load(key: String) -> ReferenceCache? {
        let path = directory + "/\(key).json"
        guard let data = FileManager.default.contents(atPath: path),
              let cache = try? JSONDecoder().decode(ReferenceCache.self, from: data), cache.key == key else { return nil }
        return cache
    }

    /// Computes every example's reference log-probs, a micro-batch at a time, and writes them (atomically).
    public static func build(key: String, step: PreferenceStep, train: [PreferenceExample], validation: [PreferenceExample],
                             batchSize: Int, progress: ((Int, Int) -> Void)? = nil) throws -> ReferenceCache {
        let unpaired = step.objective.unpaired
        var done = 0
        func compute(_ examples: [PreferenceExample]) -> [[Double]] {
            var out: [[Double]] = []
            var i = 0
            while i < examples.count {
                let batch = Array(examples[i ..< min(examples.count, i + batchSize)])
                let seqs = step.reference.withReference(step.model) { step.completionLogProbs(PreferenceStep.sequences(batch, unpaired: unpaired)) }
                for j in batch.indices { out.append(unpaired ? [seqs[j]] : [seqs[j], seqs[batch.count + j]]) }
                i += batchSize
                done += batch.count
                progress?(done, train.count + validation.count)
            }
            return out
        }
        let cache = ReferenceCache(key: key, train: compute(train), validation: compute(validation))
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try JSONEncoder().encode(cache).write(to: URL(fileURLWithPath: directory + "/\(key).json"), options: .atomic)
        return cache
    }

    /// The cached values of a micro-batch in the order `PreferenceStep` packs sequences.
    func lookup(_ indices: [Int], split: Split, pairs: Bool) -> (sequences: [Double], kl: [Double]) {
        let rows = indices.map { (split == .train ? train : validation)[$0] }
        return (pairs ? rows.map { $0[0] } + rows.map { $0[1] } : rows.map { $0[0] }, [])
    }
}
