import Foundation

/// bitsandbytes' 4-bit data types. NF4 is a table of normal-distribution
/// quantiles; FP4 is a 1-sign, 2-exponent, 1-mantissa float. Both are scaled by
/// the absolute maximum of each block.
public enum BnB4BitType: String, Sendable, Codable, CaseIterable {
    case nf4, fp4
}

/// The per-block scales of a 4-bit weight: plain f32, or themselves quantized
/// to 8 bits in blocks of 256 around their mean ("double quantization",
/// bnb's `compress_statistics`), which saves 3.5 bytes per 64 weights.
public enum BnBAbsmax: Sendable, Equatable {
    case plain([Float])
    case double(codes: [UInt8], absmax2: [Float], offset: Float)

    /// Bytes held (the dynamic map itself is shared).
    public var byteCount: Int {
        switch self {
        case .plain(let a): return a.count * 4
        case .double(let c, let a2, _): return c.count + a2.count * 4 + 4
        }
    }
}

/// A matrix quantized as bitsandbytes' `quantize_4bit` does: the flattened
/// row-major elements in blocks of `blocksize`, two 4-bit codes a byte (the
/// first element in the high nibble).
public struct BnB4BitWeight: Sendable, Equatable {
    public let type: BnB4BitType
    public let rows: Int
    public let cols: Int
    public let blocksize: Int
    public let packed: [UInt8]
    public let absmax: BnBAbsmax

    public var count: Int { rows * cols }
    public var byteCount: Int { packed.count + absmax.byteCount }

    /// A weight as a checkpoint stores it; the caller has checked that
    /// `packed` holds (rows·cols+1)/2 bytes and the absmax one scale a block.
    public init(type: BnB4BitType, rows: Int, cols: Int, blocksize: Int, packed: [UInt8], absmax: BnBAbsmax) {
        (self.type, self.rows, self.cols, self.blocksize, self.packed, self.absmax) = (type, rows, cols, blocksize, packed, absmax)
    }

    /// The f32 scale of every block (the double-quantized ones decoded as
    /// bnb's `dequantize_blockwise` + offset does).
    public func blockScales() -> [Float] {
        switch absmax {
        case .plain(let a): return a
        case .double(let codes, let absmax2, let offset):
            var decoded = [Float](repeating: 0, count: codes.count)
            BlockwiseQuantization.dequantize(codes, count: codes.count, map: BnBQuantizer.dynamicMap,
                                             blockSize: BnBQuantizer.nestedBlocksize, absmax: absmax2, into: &decoded)
            return decoded.map { $0 + offset }
        }
    }

    /// Elements `range` of the flattened matrix into `dst`. Double-quantized
    /// scales are decoded block by block here, so they stay 8-bit in memory.
    public func dequantize(_ range: Range<Int>, into dst: UnsafeMutablePointer<Float>) {
        guard !range.isEmpty else { return }
        let table = BnBQuantizer.table(type), map = BnBQuantizer.dynamicMap, nested = BnBQuantizer.nestedBlocksize
        packed.withUnsafeBufferPointer { p in
            var i = range.lowerBound
            while i < range.upperBound {
                let block = i / blocksize
                let end = min(range.upperBound, (block + 1) * blocksize)
                let scale: Float
                switch absmax {
                case .plain(let a): scale = a[block]
                case .double(let codes, let absmax2, let offset):
                    // dequantize_blockwise (map · absmax2), then + offset: two roundings
                    let decoded = map[Int(codes[block])] * absmax2[block / nested]
                    scale = decoded + offset
                }
                while i < end {
                    let byte = p[i >> 1]
                    let code = (i & 1) == 0 ? byte >> 4 : byte & 0x0F
                    dst[i - range.lowerBound] = table[Int(code)] * scale
                    i += 1
                }
            }
        }
    }

    /// The whole matrix as f32, row-major.
    public func dequantized() -> [Float] {
        var out = [Float](repeating: 0, count: count)
        out.withUnsafeMutableBufferPointer { dequantize(0 ..< count, into: $0.baseAddress!) }
        return out
    }
}

/// LLM.int8 weights as bitsandbytes' `Int8Params` stores them: each row in
/// int8 (`CB`) with its absolute maximum (`SCB`), W ≈ CB · SCB / 127.
public struct BnBInt8Weight: Sendable, Equatable {
    public let rows: Int
    public let cols: Int
    public let cb: [Int8]
    public let scb: [Float]

    public var byteCount: Int { cb.count + scb.count * 4 }

    /// A weight as a checkpoint stores it (`cb` rows·cols, `scb` one per row, checked by the caller).
    public init(rows: Int, cols: Int, cb: [Int8], scb: [Float]) {
        (self.rows, self.cols, self.cb, self.scb) = (rows, cols, cb, scb)
    }

    /// Rows `range` into `dst` (row-major, `cols` apart), as bnb's
    /// `int8_vectorwise_dequant`: (CB · SCB) · (1/127) in f32.
    public func dequantizeRows(_ range: Range<Int>, into dst: UnsafeMutablePointer<Float>) {
        let inv127 = Float(7.874015718698502e-3)
        cb.withUnsafeBufferPointer { c in
            for r in range {
                let s = scb[r], out = dst + (r - range.lowerBound) * cols, row = c.baseAddress! + r * cols
                for j in 0 ..< cols { out[j] = (Float(row[j]) * s) * inv127 }
            }
        }
    }

    public func dequantized() -> [Float] {
        var out = [Float](repeating: 0, count: rows * cols)
        out.withUnsafeMutableBufferPointer { dequantizeRows(0 ..< rows, into: $0.baseAddress!) }
        return out
    }
}

/// bitsandbytes' quantizers, reproduced bit for bit (its `quantize_4bit` and
/// `dequantize_4bit` with blocksize 64, double quantization of the absmax in
/// 8-bit blocks of 256, and `int8_vectorwise_quant`), checked against
/// fixtures made with bitsandbytes on CPU by tools/make_quant_fixtures.py.
public enum BnBQuantizer {
    public static let blocksize = 64
    public static let nestedBlocksize = 256

    /// NF4 levels by code (bnb's `get_4bit_type("nf4")`).
    static let nf4: [Float] = [
        -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
        -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
        0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
        0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
    ]
    /// FP4 levels by code: the bit patterns' values (sign, 2-bit exponent with
    /// bias 2, 1 mantissa bit) over their maximum 12, divided in f32 as bnb does.
    /// (bnb's scalar CPU kernel returns −0 for code 8, its vector kernel — the
    /// one rows of a multiple of 64 take — +0; Loft follows the latter.)
    static let fp4: [Float] = [0, 0.0625, 8, 12, 4, 6, 2, 3, 0, -0.0625, -8, -12, -4, -6, -2, -3].map { Float($0) / 12 }

    public static func table(_ type: BnB4BitType) -> [Float] { type == .nf4 ? nf4 : fp4 }

    /// Codes in increasing order of value and the midpoints between
    /// neighbours: a value takes the code of its bucket (bnb's CPU quantizer
    /// is torch.bucketize, so a value on a midpoint goes to the lower level).
    /// FP4's two zeros (+0 at code 0, −0 at 8) keep the order torch's argsort
    /// gives them, which decides the codes of tiny values.
    static func buckets(_ type: BnB4BitType) -> (order: [UInt8], bounds: [Float]) {
        let order: [UInt8] = type == .nf4 ? Array(0 ..< 16) : [11, 10, 13, 12, 15, 14, 9, 0, 8, 1, 6, 7, 4, 5, 2, 3]
        let t = table(type)
        let bounds = (0 ..< 15).map { (t[Int(order[$0])] + t[Int(order[$0 + 1])]) / 2 }
        return (order, bounds)
    }

    /// Quantizes `count` row-major elements of a [rows, cols] matrix.
    public static func quantize4bit(_ w: UnsafePointer<Float>, rows: Int, cols: Int, type: BnB4BitType,
                                    doubleQuant: Bool) -> BnB4BitWeight {
        let n = rows * cols, bs = blocksize
        let blocks = (n + bs - 1) / bs
        var absmax = [Float](repeating: 0, count: blocks)
        var packed = [UInt8](repeating: 0, count: (n + 1) / 2)
        let (order, bounds) = buckets(type)
        let smallest = Float(1e-38)
        func code(_ scaled: Float) -> UInt8 {
            let s = min(max(scaled, -1), 1)
            var i = 0
            while i < 15 && bounds[i] < s { i += 1 }
            return order[i]
        }
        let zeroCode = code(0)
        for b in 0 ..< blocks {
            let lo = b * bs, hi = min(n, lo + bs)
            var m: Float = 0
            for i in lo ..< hi { m = max(m, abs(w[i])) }
            absmax[b] = m
            let safe = max(m, smallest)
            // Whole blocks multiply by the reciprocal, the partial last block
            // divides: bnb's torch code does exactly this, and the roundings differ.
            let full = hi - lo == bs
            let reciprocal = 1 / safe
            for i in lo ..< hi {
                let c = code(full ? w[i] * reciprocal : w[i] / safe)
                if i & 1 == 0 { packed[i >> 1] = c << 4 } else { packed[i >> 1] |= c }
            }
        }
        if n & 1 == 1 { packed[n >> 1] |= zeroCode }  // the pad element is a zero
        let scales: BnBAbsmax
        if doubleQuant {
            let offset = torchMean(absmax)
            let centred = absmax.map { $0 - offset }
            var codes = [UInt8](repeating: 0, count: blocks)
            var absmax2 = [Float](repeating: 0, count: BlockwiseQuantization.blockCount(blocks, blockSize: nestedBlocksize))
            BlockwiseQuantization.quantize(centred, count: blocks, map: dynamicMap, blockSize: nestedBlocksize, rules: .pytorch,
                                           codes: &codes, absmax: &absmax2)
            scales = .double(codes: codes, absmax2: absmax2, offset: offset)
        } else {
            scales = .plain(absmax)
        }
        return BnB4BitWeight(type: type, rows: rows, cols: cols, blocksize: bs, packed: packed, absmax: scales)
    }

    public static func quantize4bit(_ w: [Float], rows: Int, cols: Int, type: BnB4BitType, doubleQuant: Bool) -> BnB4BitWeight {
        precondition(w.count == rows * cols, "quantize4bit: \(w.count) values for [\(rows), \(cols)]")
        return w.withUnsafeBufferPointer { quantize4bit($0.baseAddress!, rows: rows, cols: cols, type: type, doubleQuant: doubleQuant) }
    }

    /// The 8-bit map double quantization codes the centred absmax with
    /// (bnb's default `create_dynamic_map()`, signed).
    public static let dynamicMap: [Float] = DynamicQuantizationMap.signed

    /// torch's float32 `mean` on CPU, to the bit: its cascade sum (8-lane
    /// vectors, 4-way interleaving, partial sums folded every 16 steps), then
    /// one division. bnb's double quantization centres the absmax on this
    /// value, so a correctly rounded mean would differ in the last bit.
    /// (Above 32768 values torch splits the sum across its threads; this is
    /// its single-thread order.)
    public static func torchMean(_ x: [Float]) -> Float {
        x.isEmpty ? .nan : torchSum(x) / Float(x.count)
    }

    static func torchSum(_ x: [Float]) -> Float {
        let n = x.count, lanes = 8
        if n < lanes {
            // too short for a vector: a 4-way interleaved scalar sum
            var partial = [Float](repeating: 0, count: 4)
            let groups = n / 4
            for k in 0 ..< 4 * groups { partial[k] = x[k] }
            for i in 4 * groups ..< n { partial[0] += x[i] }
            return partial[0] + partial[1] + partial[2] + partial[3]
        }
        let vectors = n / lanes
        // multi_row_sum over rows of 4 vectors, each lane summed on its own
        let rowsOf4 = vectors / 4
        func ceilLog2(_ v: Int) -> Int { v <= 1 ? 0 : Int.bitWidth - (v - 1).leadingZeroBitCount }
        let levelPower = max(4, ceilLog2(rowsOf4) / 4)
        let levelStep = 1 << levelPower, levelMask = levelStep - 1
        var acc = [[Float]](repeating: [Float](repeating: 0, count: 4 * lanes), count: 4)
        func load(_ row: Int, into level: inout [Float]) {
            for k in 0 ..< 4 { for l in 0 ..< lanes { level[k * lanes + l] += x[(row * 4 + k) * lanes + l] } }
        }
        var i = 0
        while i + levelStep <= rowsOf4 {
            for _ in 0 ..< levelStep { load(i, into: &acc[0]); i += 1 }
            for j in 1 ..< 4 {
                for e in 0 ..< 4 * lanes { acc[j][e] += acc[j - 1][e]; acc[j - 1][e] = 0 }
                if i & (levelMask << (j * levelPower)) != 0 { break }
            }
        }
        while i < rowsOf4 { load(i, into: &acc[0]); i += 1 }
        for j in 1 ..< 4 { for e in 0 ..< 4 * lanes { acc[0][e] += acc[j][e] } }
        // the vectors past the last row of 4 go to the first, then the four fold
        var vec = Array(acc[0][0 ..< lanes])
        for v in 4 * rowsOf4 ..< vectors { for l in 0 ..< lanes { vec[l] += x[v * lanes + l] } }
        for k in 1 ..< 4 { for l in 0 ..< lanes { vec[l] += acc[0][k * lanes + l] } }
        var total: Float = 0
        for k in vectors * lanes ..< n { total += x[k] }
        for l in 0 ..< lanes { total += vec[l] }
        return total
    }

    /// LLM.int8 row-wise quantization as `Int8Params` does it: the weight
    /// rounded to fp16 first, each row's absmax, round(w · (127/absmax)) to
    /// nearest-even. An all-zero row stays zero (bnb would produce 0·∞).
    public static func quantizeInt8Rows(_ w: UnsafePointer<Float>, rows: Int, cols: Int) -> BnBInt8Weight {
        var cb = [Int8](repeating: 0, count: rows * cols)
        var scb = [Float](repeating: 0, count: rows)
        var half = [Float](repeating: 0, count: cols)
        for r in 0 ..< rows {
            var m: Float = 0
            for j in 0 ..< cols {
                half[j] = Float(Float16(w[r * cols + j]))
                m = max(m, abs(half[j]))
            }
            scb[r] = m
            guard m > 0 else { continue }
            // torch evaluates 127.0 / tensor as reciprocal · 127: two roundings
            let s = (1 / m) * 127
            for j in 0 ..< cols {
                let q = (half[j] * s).rounded(.toNearestOrEven)
                cb[r * cols + j] = Int8(max(-127, min(127, q)))
            }
        }
        return BnBInt8Weight(rows: rows, cols: cols, cb: cb, scb: scb)
    }

    public static func quantizeInt8Rows(_ w: [Float], rows: Int, cols: Int) -> BnBInt8Weight {
        precondition(w.count == rows * cols, "quantizeInt8Rows: \(w.count) values for [\(rows), \(cols)]")
        return w.withUnsafeBufferPointer { quantizeInt8Rows($0.baseAddress!, rows: rows, cols: cols) }
    }
}
