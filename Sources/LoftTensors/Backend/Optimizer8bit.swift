import Foundation

/// bitsandbytes' "dynamic" 8-bit data type (Dettmers, "8-Bit Approximations
/// for Parallelism in Deep Learning", 2015; used by its 8-bit optimizers):
/// 256 sorted values in [−1, 1] (signed) or [0, 1] (unsigned) whose exponent
/// takes as many bits as the value needs, so tiny values keep relative
/// precision. Values are quantized after dividing by their block's absmax.
public enum DynamicQuantizationMap {
    /// For data of both signs (Adam's first moment).
    public static let signed: [Float] = build(signed: true)
    /// For non-negative data (Adam's second moment): twice the resolution.
    public static let unsigned: [Float] = build(signed: false)

    /// The construction of bitsandbytes' create_dynamic_map(signed, 7, 8):
    /// for each exponent e = 0…6, the midpoints of a linear grid over
    /// [0.1, 1] (2^e intervals signed, 2^(e+1) unsigned), times 10^(e−6);
    /// then 0 and 1. Arithmetic is float32, as torch does it, so the values
    /// are bit-identical to the reference map.
    static func build(signed: Bool) -> [Float] {
        let exponentBits = 7
        var values: [Float] = []
        for e in 0 ..< exponentBits {
            let intervals = signed ? 1 << e : 1 << (e + 1)
            let grid = linspace(0.1, 1, count: intervals + 1)
            let magnitude = Float(Foundation.pow(10.0, Double(e - (exponentBits - 1))))
            for j in 0 ..< intervals {
                let mean = (grid[j] + grid[j + 1]) / 2
                values.append(magnitude * mean)
                if signed { values.append(-(magnitude * mean)) }
            }
        }
        values.append(0)
        values.append(1)
        precondition(values.count == 256, "the dynamic map has \(values.count) entries, not 256")
        return values.sorted()
    }

    /// torch.linspace in float32: the first half counts up from `start`, the
    /// second half down from `end`, with a float32 step and one rounding per
    /// value (a fused multiply-add, as torch's vectorised kernel does; plain
    /// multiply-then-add differs from bitsandbytes' map in 31 entries).
    static func linspace(_ start: Float, _ end: Float, count: Int) -> [Float] {
        guard count > 1 else { return [start] }
        let step = (end - start) / Float(count - 1)
        let half = count / 2
        return (0 ..< count).map { i in
            i < half ? start.addingProduct(step, Float(i)) : end.addingProduct(-step, Float(count - 1 - i))
        }
    }
}

/// Blockwise 8-bit quantization: each block of `blockSize` values is divided
/// by its largest magnitude (absmax, kept as f32) and stored as the index of
/// the nearest entry of a 256-value map.
public enum BlockwiseQuantization {
    /// bitsandbytes' block size for optimizer state.
    public static let optimizerBlockSize = 256

    public static func blockCount(_ count: Int, blockSize: Int = optimizerBlockSize) -> Int {
        (count + blockSize - 1) / blockSize
    }

    /// The index of the map entry nearest to x (the lower one on a tie), for
    /// a sorted map. bitsandbytes' CUDA kernels round to the nearest entry
    /// the same way; its CPU kernel uses an approximate table search that
    /// picks a neighbouring entry for about 1% of values.
    @inline(__always)
    public static func nearestIndex(_ x: Float, in map: UnsafePointer<Float>) -> Int {
        // Largest i with map[i] <= x (0 when x is below every entry).
        var lo = 0, hi = 255
        while lo < hi {
            let mid = (lo + hi + 1) >> 1
            if map[mid] <= x { lo = mid } else { hi = mid - 1 }
        }
        if lo < 255 && abs(map[lo + 1] - x) < abs(x - map[lo]) { return lo + 1 }
        return lo
    }

    /// Quantizes one block: writes its absmax and codes. An all-zero block
    /// gets absmax 0 and the codes of 0 (bitsandbytes divides 0 by 0 there;
    /// either way it dequantizes to zeros).
    @inline(__always)
    public static func quantizeBlock(_ x: UnsafePointer<Float>, count: Int, map: UnsafePointer<Float>,
                                     codes: UnsafeMutablePointer<UInt8>, absmax: inout Float) {
        var m: Float = 0
        for i in 0 ..< count { m = max(m, abs(x[i])) }
        absmax = m
        for i in 0 ..< count {
            let normalized = m > 0 ? x[i] / m : 0
            codes[i] = UInt8(truncatingIfNeeded: nearestIndex(normalized, in: map))
        }
    }

    /// Quantizes `count` floats block by block.
    public static func quantize(_ x: UnsafePointer<Float>, count: Int, map: [Float], blockSize: Int = optimizerBlockSize,
                                codes: UnsafeMutablePointer<UInt8>, absmax: UnsafeMutablePointer<Float>) {
        precondition(map.count == 256, "a quantization map has 256 entries")
        map.withUnsafeBufferPointer { mp in
            for b in 0 ..< blockCount(count, blockSize: blockSize) {
                let start = b * blockSize
                quantizeBlock(x + start, count: min(blockSize, count - start), map: mp.baseAddress!,
                              codes: codes + start, absmax: &absmax[b])
            }
        }
    }

    /// out[i] = map[codes[i]] · absmax[block of i].
    public static func dequantize(_ codes: UnsafePointer<UInt8>, count: Int, map: [Float], blockSize: Int = optimizerBlockSize,
                                  absmax: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>) {
        for i in 0 ..< count { out[i] = map[Int(codes[i])] * absmax[i / blockSize] }
    }
}

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
