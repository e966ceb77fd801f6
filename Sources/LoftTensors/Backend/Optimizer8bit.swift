import Foundation
import LoftFormats

/// One vector stored 8-bit, blockwise: a byte per element and an f32 absmax
/// per block of 256, in a backend's memory. Adam's moments in 8-bit AdamW.
public final class BlockwiseQuantizedVector: @unchecked Sendable {
    public let count: Int
    /// The 256-value map the codes index (`DynamicQuantizationMap`).
    public let map: [Float]
    /// `count` bytes of codes.
    public let codes: Storage
    /// f32 [blocks].
    public let absmax: Tensor

    /// All zeros (absmax 0), as bitsandbytes initialises optimizer state.
    public init(count: Int, map: [Float]) {
        self.count = count
        self.map = map
        codes = Storage(cpuBytes: count)
        absmax = Tensor.zeros([BlockwiseQuantization.blockCount(count)])
    }

    public var blockCount: Int { absmax.count }
    /// Bytes held: codes plus absmax.
    public var byteCount: Int { count + absmax.byteCount }

    public var codeBytes: UnsafeMutablePointer<UInt8> { codes.pointer.assumingMemoryBound(to: UInt8.self) }

    /// The values as f32 (for checkpoints' readers and tests).
    public func dequantized() -> [Float] {
        var out = [Float](repeating: 0, count: count)
        out.withUnsafeMutableBufferPointer { o in
            BlockwiseQuantization.dequantize(codeBytes, count: count, map: map, absmax: absmax.floats, into: o.baseAddress!)
        }
        return out
    }
}

/// 8-bit AdamW, as bitsandbytes' AdamW8bit (transformers' `adamw_8bit`).
public protocol BackendOptimizer8bit {
    /// One AdamW step with both moments stored blockwise-8-bit: per block of
    /// 256, dequantize m (signed map) and v (unsigned map), update them and
    /// the parameter in f32 exactly as `adamW` does, then requantize each
    /// moment with the block's new absmax.
    func adamW8bit(param: Tensor, grad: Tensor, m: BlockwiseQuantizedVector, v: BlockwiseQuantizedVector, hyper: AdamWHyper)
}
