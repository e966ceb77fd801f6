import Foundation
import LoftFormats
import LoftTensors

/// Weights from a Hugging Face directory (single or sharded safetensors).
/// f32 tensors are used in place in the memory map, so a model costs no copy
/// to open; other dtypes are converted to f32 on load.
public final class SafetensorsWeights: WeightSource {
    public let checkpoint: SafetensorsCheckpoint
    public var path: String { checkpoint.path }

    /// The bitsandbytes quantization its config.json records, if any: its
    /// projections are then read as stored (BnBCheckpoint.swift).
    public let bnb: BnBCheckpointFormat?

    public init(directory: String) throws {
        checkpoint = try SafetensorsCheckpoint(path: directory)
        let configPath = directory + "/config.json"
        if let data = FileManager.default.contents(atPath: configPath),
           let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] {
            bnb = try BnBCheckpointFormat.read(config: json, source: configPath)
        } else {
            bnb = nil
        }
    }

    public func contains(_ name: String) -> Bool { checkpoint.info(named: name) != nil }

    public func load(_ name: String) throws -> Tensor? {
        guard let shard = checkpoint.shard(for: name), let t = shard.tensor(named: name) else { return nil }
        guard t.dtype.isFloatingPoint else {
            if bnb != nil {
                throw FormatError(shard.path, "weight \(name) is quantized by bitsandbytes (\(t.dtype)); it is read as a frozen projection only — it cannot be an embedding, norm or lm_head")
            }
            throw FormatError(shard.path, "weight \(name) is stored as \(t.dtype); a model weight must be a float type")
        }
        if t.dtype == .f32, let base = t.bytes.baseAddress, Int(bitPattern: base) % MemoryLayout<Float>.alignment == 0 {
            // Frozen weights are only ever read, so the read-only mapping is safe to borrow.
            let storage = Storage(borrowing: UnsafeMutableRawPointer(mutating: base), byteCount: t.bytes.count,
                                  device: .cpu, owner: shard)
            return Tensor(storage: storage, shape: t.shape, dtype: .f32)
        }
        let out = Tensor.uninitialized(t.shape)
        if let base = t.bytes.baseAddress { t.dtype.toFloats(base, count: t.elementCount, into: out.floats) }
        return out
    }

    public var storageSummary: [String: Int] {
        var counts: [String: Int] = [:]
        for shard in checkpoint.shards { for t in shard.tensors { counts[t.dtype.rawValue, default: 0] += 1 } }
        return counts
    }
}
