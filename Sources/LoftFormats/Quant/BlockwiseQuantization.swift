import Foundation

/// bitsandbytes' "dynamic" 8-bit data type (Dettmers, "8-Bit Approximations
/// for Parallelism in Deep Learning", 2015): 256 sorted values in [−1, 1]
/// (signed) or [0, 1] (unsigned) whose exponent takes as many bits as the
/// value needs, so tiny values keep relative precision. Values are quantized
/// after dividing by their block's absmax. 8-bit AdamW stores its moments in
/// it; double quantization of NF4/FP4 stores the blocks' absmax in it.
public enum DynamicQuantizationMap {
    /// For data of both signs (Adam's first moment, centred 4-bit absmax).
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
/// a level of a sorted 256-value map. bitsandbytes has two code paths that
/// disagree in the last bit, and Loft matches each where it stands in for it,
/// so the rules are explicit (`Rules.optimizer`, `Rules.pytorch`).
public enum BlockwiseQuantization {
    /// bitsandbytes' block size for optimizer state.
    public static let optimizerBlockSize = 256

    /// Which level a value, already scaled into [−1, 1], takes.
    public enum Rounding: Sendable {
        /// The nearest level, the lower one on a tie (distances compared in
        /// f32): bnb's CUDA optimizer kernels. (Its CPU optimizer kernel uses
        /// an approximate table search that picks a neighbouring level for
        /// about 1% of values.)
        case nearestLevel
        /// The level whose bucket between f32 midpoints of neighbours holds
        /// the value, a value on a midpoint going to the lower level: bnb's
        /// PyTorch `quantize_blockwise` (torch.bucketize). Differs from
        /// `nearestLevel` where the rounded midpoint and the rounded
        /// distances disagree. (bnb's native CPU `quantize_blockwise`
        /// departs from this rule for about 0.4% of values, picking the
        /// farther of two levels; Loft follows the rule.)
        case midpointBuckets
    }

    /// How a block's values are scaled into [−1, 1] and which absmax the
    /// block keeps; the two differ most in the partial last block.
    public enum Scaling: Sendable {
        /// Every block, the partial last one too, divides each value by its
        /// absmax and keeps the absmax as is; an all-zero block keeps 0 and
        /// the code of 0: bnb's optimizer kernels (which divide 0 by 0 there;
        /// either way it dequantizes to zeros).
        case divideEveryBlock
        /// bnb's PyTorch path: the absmax floored at 1e-38; a full block
        /// multiplies by its reciprocal and keeps the unfloored absmax, the
        /// partial last block divides and keeps the floored one; the result
        /// is clamped to [−1, 1]. (The roundings of x·(1/a) and x/a differ.)
        case reciprocalExceptPartialBlock
    }

    public struct Rules: Sendable {
        public var rounding: Rounding
        public var scaling: Scaling

        @inlinable
        public init(rounding: Rounding, scaling: Scaling) {
            self.rounding = rounding
            self.scaling = scaling
        }

        /// As bitsandbytes' 8-bit optimizers (Adam's moments).
        @inlinable
        public static var optimizer: Rules { Rules(rounding: .nearestLevel, scaling: .divideEveryBlock) }
        /// As bitsandbytes' `quantize_blockwise` through PyTorch (double
        /// quantization of the NF4/FP4 absmax).
        @inlinable
        public static var pytorch: Rules { Rules(rounding: .midpointBuckets, scaling: .reciprocalExceptPartialBlock) }
    }

    public static func blockCount(_ count: Int, blockSize: Int = optimizerBlockSize) -> Int {
        (count + blockSize - 1) / blockSize
    }

    /// The index of the map entry nearest to x (the lower one on a tie), for
    /// a sorted map of 256.
    @inlinable @inline(__always)
    static func nearestIndex(_ x: Float, in map: UnsafePointer<Float>) -> Int {
        // Largest i with map[i] <= x (0 when x is below every entry).
        var lo = 0, hi = 255
        while lo < hi {
            let mid = (lo + hi + 1) >> 1
            if map[mid] <= x { lo = mid } else { hi = mid - 1 }
        }
        if lo < 255 && abs(map[lo + 1] - x) < abs(x - map[lo]) { return lo + 1 }
        return lo
    }

    /// The number of midpoints between neighbours of a sorted map of 256
    /// that lie below x: the index of the bucket holding x.
    @inlinable @inline(__always)
    static func bucketIndex(_ x: Float, in map: UnsafePointer<Float>) -> Int {
        var lo = 0, hi = 255
        while lo < hi {
            let mid = (lo + hi) >> 1
            if (map[mid] + map[mid + 1]) / 2 < x { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    @inlinable @inline(__always)
    static func code(_ x: Float, in map: UnsafePointer<Float>, rounding: Rounding) -> UInt8 {
        switch rounding {
        case .nearestLevel: return UInt8(truncatingIfNeeded: nearestIndex(x, in: map))
        case .midpointBuckets: return UInt8(truncatingIfNeeded: bucketIndex(x, in: map))
        }
    }

    /// Quantizes one block of `count` values (`count < blockSize` only for the
    /// last block): writes its absmax and codes.
    @inlinable @inline(__always)
    public static func quantizeBlock(_ x: UnsafePointer<Float>, count: Int, blockSize: Int, map: UnsafePointer<Float>,
                                     rules: Rules, codes: UnsafeMutablePointer<UInt8>, absmax: inout Float) {
        var m: Float = 0
        for i in 0 ..< count { m = max(m, abs(x[i])) }
        switch rules.scaling {
        case .divideEveryBlock:
            absmax = m
            for i in 0 ..< count {
                codes[i] = code(m > 0 ? x[i] / m : 0, in: map, rounding: rules.rounding)
            }
        case .reciprocalExceptPartialBlock:
            let safe = max(m, Float(1e-38)), reciprocal = 1 / safe
            let full = count == blockSize
            absmax = full ? m : safe
            for i in 0 ..< count {
                let scaled = full ? x[i] * reciprocal : x[i] / safe
                codes[i] = code(min(max(scaled, -1), 1), in: map, rounding: rules.rounding)
            }
        }
    }

    /// Quantizes `count` floats block by block.
    public static func quantize(_ x: UnsafePointer<Float>, count: Int, map: [Float], blockSize: Int = optimizerBlockSize,
                                rules: Rules = .optimizer,
                                codes: UnsafeMutablePointer<UInt8>, absmax: UnsafeMutablePointer<Float>) {
        precondition(map.count == 256, "a quantization map has 256 entries")
        map.withUnsafeBufferPointer { mp in
            for b in 0 ..< blockCount(count, blockSize: blockSize) {
                let start = b * blockSize
                quantizeBlock(x + start, count: min(blockSize, count - start), blockSize: blockSize, map: mp.baseAddress!,
                              rules: rules, codes: codes + start, absmax: &absmax[b])
            }
        }
    }

    /// out[i] = map[codes[i]] · absmax[block of i].
    public static func dequantize(_ codes: UnsafePointer<UInt8>, count: Int, map: [Float], blockSize: Int = optimizerBlockSize,
                                  absmax: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>) {
        for i in 0 ..< count { out[i] = map[Int(codes[i])] * absmax[i / blockSize] }
    }
}
