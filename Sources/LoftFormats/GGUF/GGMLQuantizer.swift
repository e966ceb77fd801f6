import Foundation

/// Encodes f32 values as ggml tensor data: F32, F16, BF16, and the block
/// types Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K exactly as ggml's
/// reference quantizers (`quantize_row_<type>_ref`, what llama-quantize uses
/// without an importance matrix) do, byte for byte (checked in
/// GGUFWriterTests and KQuantTests against bytes written by ggml itself).
public enum GGMLQuantizer {
    public static let supportedTypes: [GGMLType] = [.f32, .f16, .bf16, .q8_0, .q4_0, .q4_1, .q5_0, .q5_1, .q4_K, .q5_K, .q6_K]

    /// Encodes `values` (a whole number of rows of `rowLength`) as `type`.
    public static func encode(_ values: [Float], rowLength: Int, as type: GGMLType, name: String = "tensor") throws -> [UInt8] {
        guard supportedTypes.contains(type) else {
            throw FormatError(name, "Loft cannot write \(type) yet; choose one of \(supportedTypes.map(\.description).joined(separator: ", "))")
        }
        let block = type.blockLayout.elements
        guard rowLength > 0, values.count % rowLength == 0, rowLength % block == 0 else {
            throw FormatError(name, "rows of \(rowLength) elements are not a whole number of \(type) blocks of \(block)")
        }
        if let i = values.firstIndex(where: { !$0.isFinite }) {
            throw FormatError(name, "element \(i) is \(values[i]); refusing to write a non-finite weight")
        }
        switch type {
        case .f32:
            return values.withUnsafeBytes { [UInt8]($0) }
        case .f16:
            var out = [UInt8](repeating: 0, count: values.count * 2)
            for (i, v) in values.enumerated() {
                let h = Float16(v)
                if !h.isFinite { throw FormatError(name, "value \(v) overflows F16 (largest 65504); export as BF16 or F32") }
                let b = h.bitPattern
                out[2 * i] = UInt8(b & 0xff); out[2 * i + 1] = UInt8(b >> 8)
            }
            return out
        case .bf16:
            var out = [UInt8](repeating: 0, count: values.count * 2)
            for (i, v) in values.enumerated() {
                let b = bf16Bits(v)
                out[2 * i] = UInt8(b & 0xff); out[2 * i + 1] = UInt8(b >> 8)
            }
            return out
        case .q8_0:
            return quantizeQ8_0(values)
        case .q4_0:
            return quantizeQ4_0(values)
        case .q4_1, .q5_1:
            return quantizeAffine32(values, bits: type == .q4_1 ? 4 : 5)
        case .q5_0:
            return quantizeQ5_0(values)
        case .q4_K, .q5_K:
            return quantizeQ45K(values, bits: type == .q4_K ? 4 : 5)
        case .q6_K:
            return quantizeQ6K(values)
        default:
            fatalError("unreachable")
        }
    }

    /// bfloat16 with round-to-nearest-even (NaN stays NaN).
    static func bf16Bits(_ x: Float) -> UInt16 {
        let u = x.bitPattern
        if x.isNaN { return UInt16(u >> 16) | 0x40 }
        return UInt16((u &+ (0x7fff &+ ((u >> 16) & 1))) >> 16)
    }

    static func halfBits(_ x: Float) -> UInt16 { Float16(x).bitPattern }

    /// Blocks of 32: d = max|x| / 127 as f16, q = round(x / d) (half away from zero).
    static func quantizeQ8_0(_ x: [Float]) -> [UInt8] {
        let blocks = x.count / 32
        var out = [UInt8](repeating: 0, count: blocks * 34)
        for b in 0 ..< blocks {
            var amax: Float = 0
            for j in 0 ..< 32 { amax = max(amax, abs(x[b * 32 + j])) }
            let d = amax / 127
            let id: Float = d != 0 ? 1 / d : 0
            let h = halfBits(d)
            out[b * 34] = UInt8(h & 0xff); out[b * 34 + 1] = UInt8(h >> 8)
            for j in 0 ..< 32 {
                let q = Int8((x[b * 32 + j] * id).rounded())  // roundf: half away from zero
                out[b * 34 + 2 + j] = UInt8(bitPattern: q)
            }
        }
        return out
    }

    /// Blocks of 32: d = (the value of largest magnitude) / -8 as f16, q = min(15, trunc(x/d + 8.5)),
    /// element j in the low nibble of byte j and element j+16 in its high nibble.
    static func quantizeQ4_0(_ x: [Float]) -> [UInt8] {
        let blocks = x.count / 32
        var out = [UInt8](repeating: 0, count: blocks * 18)
        for b in 0 ..< blocks {
            var amax: Float = 0, mx: Float = 0
            for j in 0 ..< 32 {
                let v = x[b * 32 + j]
                if amax < abs(v) { amax = abs(v); mx = v }
            }
            let d = mx / -8
            let id: Float = d != 0 ? 1 / d : 0
            let h = halfBits(d)
            out[b * 18] = UInt8(h & 0xff); out[b * 18 + 1] = UInt8(h >> 8)
            for j in 0 ..< 16 {
                let x0 = x[b * 32 + j] * id, x1 = x[b * 32 + 16 + j] * id
                let q0 = min(15, Int(Int8(truncatingIfNeeded: Int((x0 + 8.5).rounded(.towardZero)))))
                let q1 = min(15, Int(Int8(truncatingIfNeeded: Int((x1 + 8.5).rounded(.towardZero)))))
                out[b * 18 + 2 + j] = UInt8(q0) | UInt8(q1) << 4
            }
        }
        return out
    }
}

// MARK: - Q4_1, Q5_0, Q5_1 (blocks of 32)

extension GGMLQuantizer {
    @inline(__always) static func putHalf(_ x: Float, _ out: UnsafeMutablePointer<UInt8>) {
        let h = halfBits(x)
        out[0] = UInt8(h & 0xff); out[1] = UInt8(h >> 8)
    }

    @inline(__always) static func half(_ p: UnsafePointer<UInt8>) -> Float {
        GGMLDequantizer.halfBitsToFloat(UInt16(p[0]) | UInt16(p[1]) << 8)
    }

    /// Q4_1 / Q5_1: d = (max − min) / (2^bits − 1) and m = min as f16,
    /// q = trunc((x − min)/d + 0.5); element j in the low nibble of byte j,
    /// element j+16 in its high nibble, and (Q5_1) the fifth bits in a 32-bit qh.
    static func quantizeAffine32(_ x: [Float], bits: Int) -> [UInt8] {
        let blockBytes = bits == 4 ? 20 : 24
        let blocks = x.count / 32
        var out = [UInt8](repeating: 0, count: blocks * blockBytes)
        x.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for b in 0 ..< blocks {
                    let v = src.baseAddress! + b * 32
                    let y = dst.baseAddress! + b * blockBytes
                    var mn = Float.greatestFiniteMagnitude, mx = -Float.greatestFiniteMagnitude
                    for j in 0 ..< 32 {
                        if v[j] < mn { mn = v[j] }
                        if v[j] > mx { mx = v[j] }
                    }
                    let d = (mx - mn) / Float((1 << bits) - 1)
                    let id: Float = d != 0 ? 1 / d : 0
                    putHalf(d, y); putHalf(mn, y + 2)
                    var qh: UInt32 = 0
                    let qs = y + (bits == 4 ? 4 : 8)
                    for j in 0 ..< 16 {
                        let x0 = (v[j] - mn) * id, x1 = (v[16 + j] - mn) * id
                        // C's (int8_t)/(uint8_t) casts truncate toward zero; values lie in [0, 2^bits − 0.5].
                        var q0 = Int((x0 + 0.5).rounded(.towardZero)), q1 = Int((x1 + 0.5).rounded(.towardZero))
                        if bits == 4 { q0 = min(15, q0); q1 = min(15, q1) }
                        qs[j] = UInt8(q0 & 0xf) | UInt8(q1 & 0xf) << 4
                        qh |= UInt32((q0 >> 4) & 1) << UInt32(j)
                        qh |= UInt32((q1 >> 4) & 1) << UInt32(j + 16)
                    }
                    if bits == 5 { for k in 0 ..< 4 { y[4 + k] = UInt8((qh >> UInt32(8 * k)) & 0xff) } }
                }
            }
        }
        return out
    }

    /// Q5_0: d = (the value of largest magnitude) / −16 as f16,
    /// q = min(31, trunc(x/d + 16.5)), low nibbles as Q4_0, fifth bits in qh.
    static func quantizeQ5_0(_ x: [Float]) -> [UInt8] {
        let blocks = x.count / 32
        var out = [UInt8](repeating: 0, count: blocks * 22)
        x.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for b in 0 ..< blocks {
                    let v = src.baseAddress! + b * 32
                    let y = dst.baseAddress! + b * 22
                    var amax: Float = 0, mx: Float = 0
                    for j in 0 ..< 32 where amax < abs(v[j]) { amax = abs(v[j]); mx = v[j] }
                    let d = mx / -16
                    let id: Float = d != 0 ? 1 / d : 0
                    putHalf(d, y)
                    var qh: UInt32 = 0
                    for j in 0 ..< 16 {
                        let q0 = min(31, Int(Int8(truncatingIfNeeded: Int((v[j] * id + 16.5).rounded(.towardZero)))))
                        let q1 = min(31, Int(Int8(truncatingIfNeeded: Int((v[16 + j] * id + 16.5).rounded(.towardZero)))))
                        y[6 + j] = UInt8(q0 & 0xf) | UInt8(q1 & 0xf) << 4
                        qh |= UInt32((q0 >> 4) & 1) << UInt32(j)
                        qh |= UInt32((q1 >> 4) & 1) << UInt32(j + 16)
                    }
                    for k in 0 ..< 4 { y[2 + k] = UInt8((qh >> UInt32(8 * k)) & 0xff) }
                }
            }
        }
        return out
    }
}

// MARK: - K-quants (super-blocks of 256)

extension GGMLQuantizer {
    /// ggml's nearest_int: adding 1.5·2^23 puts the rounded integer (ties to
    /// even) in the low mantissa bits; valid for |x| < 2^22.
    @inline(__always) static func nearestInt(_ x: Float) -> Int {
        let v = x + 12582912
        return Int(Int32(bitPattern: v.bitPattern & 0x007f_ffff) - 0x0040_0000)
    }

    /// ggml's make_qkx2_quants: for one sub-block of `n` values, the scale and
    /// (negated) minimum of x ≈ scale·L + min with L in 0...nmax minimising
    /// the weighted squared error, searched over nstep+1 candidate scales.
    /// Float operations are in ggml's order so the result is bit-identical.
    static func makeQKX2Quants(n: Int, nmax: Int, x: UnsafePointer<Float>, weights: UnsafePointer<Float>,
                               L: UnsafeMutablePointer<UInt8>, Laux: UnsafeMutablePointer<UInt8>,
                               rmin: Float, rdelta: Float, nstep: Int) -> (scale: Float, negMin: Float) {
        var mn = x[0], mx = x[0]
        var sumW = weights[0]
        var sumX = sumW * x[0]
        for i in 1 ..< n {
            if x[i] < mn { mn = x[i] }
            if x[i] > mx { mx = x[i] }
            let w = weights[i]
            sumW += w
            sumX += w * x[i]
        }
        if mn > 0 { mn = 0 }
        if mx == mn {
            for i in 0 ..< n { L[i] = 0 }
            return (0, -mn)
        }
        let fmax = Float(nmax)
        var iscale = fmax / (mx - mn)
        var scale = 1 / iscale
        var bestError: Float = 0
        for i in 0 ..< n {
            let l = nearestInt(iscale * (x[i] - mn))
            L[i] = UInt8(max(0, min(nmax, l)))
            var diff = scale * Float(L[i]) + mn - x[i]
            diff = diff * diff
            bestError += weights[i] * diff
        }
        if nstep < 1 { return (scale, -mn) }
        for step in 0 ... nstep {
            iscale = (rmin + rdelta * Float(step) + fmax) / (mx - mn)
            var sumL: Float = 0, sumL2: Float = 0, sumXL: Float = 0
            for i in 0 ..< n {
                let l = max(0, min(nmax, nearestInt(iscale * (x[i] - mn))))
                Laux[i] = UInt8(l)
                let w = weights[i], fl = Float(l)
                sumL += w * fl
                sumL2 += w * fl * fl
                sumXL += w * fl * x[i]
            }
            let D = sumW * sumL2 - sumL * sumL
            if D > 0 {
                var thisScale = (sumW * sumXL - sumX * sumL) / D
                var thisMin = (sumL2 * sumX - sumL * sumXL) / D
                if thisMin > 0 {
                    thisMin = 0
                    thisScale = sumXL / sumL2
                }
                var curError: Float = 0
                for i in 0 ..< n {
                    var diff = thisScale * Float(Laux[i]) + thisMin - x[i]
                    diff = diff * diff
                    curError += weights[i] * diff
                }
                if curError < bestError {
                    for i in 0 ..< n { L[i] = Laux[i] }
                    bestError = curError
                    scale = thisScale
                    mn = thisMin
                }
            }
        }
        return (scale, -mn)
    }

    /// Q4_K / Q5_K: each super-block of 256 has eight sub-blocks of 32 with a
    /// 6-bit scale and 6-bit min (relative to f16 d and dmin), values in
    /// 0...15 (0...31). Layout: d, dmin, 12 bytes of packed scales/mins,
    /// (Q5_K) 32 bytes of fifth bits, then 128 bytes of nibbles.
    static func quantizeQ45K(_ x: [Float], bits: Int) -> [UInt8] {
        let blockBytes = bits == 4 ? 144 : 176
        let nmax = (1 << bits) - 1
        let blocks = x.count / 256
        var out = [UInt8](repeating: 0, count: blocks * blockBytes)
        x.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                var L = [UInt8](repeating: 0, count: 256), Laux = [UInt8](repeating: 0, count: 32)
                var weights = [Float](repeating: 0, count: 32)
                var scales = [Float](repeating: 0, count: 8), mins = [Float](repeating: 0, count: 8)
                L.withUnsafeMutableBufferPointer { L in
                Laux.withUnsafeMutableBufferPointer { Laux in
                weights.withUnsafeMutableBufferPointer { weights in
                for b in 0 ..< blocks {
                    let v = src.baseAddress! + b * 256
                    let y = dst.baseAddress! + b * blockBytes
                    var maxScale: Float = 0, maxMin: Float = 0
                    for j in 0 ..< 8 {
                        let xs = v + 32 * j
                        var sumX2: Float = 0
                        for l in 0 ..< 32 { sumX2 += xs[l] * xs[l] }
                        let avX = (sumX2 / 32).squareRoot()
                        for l in 0 ..< 32 { weights[l] = avX + abs(xs[l]) }
                        let r = makeQKX2Quants(n: 32, nmax: nmax, x: xs, weights: weights.baseAddress!,
                                               L: L.baseAddress! + 32 * j, Laux: Laux.baseAddress!,
                                               rmin: bits == 4 ? -1 : -0.5, rdelta: 0.1, nstep: bits == 4 ? 20 : 15)
                        scales[j] = r.scale; mins[j] = r.negMin
                        if r.scale > maxScale { maxScale = r.scale }
                        if r.negMin > maxMin { maxMin = r.negMin }
                    }
                    let invScale: Float = maxScale > 0 ? 63 / maxScale : 0
                    let invMin: Float = maxMin > 0 ? 63 / maxMin : 0
                    let sc = y + 4
                    for j in 0 ..< 8 {
                        // C stores nearest_int's result in a uint8_t before clamping to 63.
                        let ls = min(63, UInt8(truncatingIfNeeded: nearestInt(invScale * scales[j])))
                        let lm = min(63, UInt8(truncatingIfNeeded: nearestInt(invMin * mins[j])))
                        if j < 4 {
                            sc[j] = ls; sc[j + 4] = lm
                        } else {
                            sc[j + 4] = (ls & 0xf) | ((lm & 0xf) << 4)
                            sc[j - 4] |= (ls >> 4) << 6
                            sc[j] |= (lm >> 4) << 6
                        }
                    }
                    putHalf(maxScale / 63, y); putHalf(maxMin / 63, y + 2)
                    let d0 = half(y), dmin0 = half(y + 2)
                    for j in 0 ..< 8 {
                        let (s, m) = scaleMinK4(j, sc)
                        let d = d0 * Float(s)
                        if d == 0 { continue }
                        let dm = dmin0 * Float(m)
                        for i in 0 ..< 32 {
                            let l = nearestInt((v[32 * j + i] + dm) / d)
                            L[32 * j + i] = UInt8(max(0, min(nmax, l)))
                        }
                    }
                    if bits == 4 {
                        let q = y + 16
                        for (k, j) in stride(from: 0, to: 256, by: 64).enumerated() {
                            for l in 0 ..< 32 { q[32 * k + l] = L[j + l] | (L[j + l + 32] << 4) }
                        }
                    } else {
                        let qh = y + 16, ql = y + 48
                        var m1: UInt8 = 1, m2: UInt8 = 2
                        for (k, n) in stride(from: 0, to: 256, by: 64).enumerated() {
                            for j in 0 ..< 32 {
                                var l1 = L[n + j], l2 = L[n + j + 32]
                                if l1 > 15 { l1 -= 16; qh[j] |= m1 }
                                if l2 > 15 { l2 -= 16; qh[j] |= m2 }
                                ql[32 * k + j] = l1 | (l2 << 4)
                            }
                            m1 <<= 2; m2 <<= 2
                        }
                    }
                }
                }
                }
                }
            }
        }
        return out
    }

    /// The 6-bit scale and min of sub-block j from the 12 packed bytes.
    @inline(__always) static func scaleMinK4(_ j: Int, _ q: UnsafePointer<UInt8>) -> (UInt8, UInt8) {
        if j < 4 { return (q[j] & 63, q[j + 4] & 63) }
        return ((q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }

    /// ggml's make_qx_quants with rmse_type 1 and no importance weights (what
    /// Q6_K uses): symmetric L in −nmax...nmax−1 (stored +nmax), the scale
    /// refined by weighted least squares (weights x²) over 19 candidates.
    static func makeQXQuants(n: Int, nmax: Int, x: UnsafePointer<Float>, L: UnsafeMutablePointer<Int8>) -> Float {
        var mx: Float = 0, amax: Float = 0
        for i in 0 ..< n {
            let ax = abs(x[i])
            if ax > amax { amax = ax; mx = x[i] }
        }
        if amax < 1e-15 {  // GROUP_MAX_EPS: all zero
            for i in 0 ..< n { L[i] = 0 }
            return 0
        }
        let fmax = Float(nmax)
        var iscale = Float(-nmax) / mx
        var sumLX: Float = 0, sumL2: Float = 0
        for i in 0 ..< n {
            let l = max(-nmax, min(nmax - 1, nearestInt(iscale * x[i])))
            L[i] = Int8(l + nmax)
            let w = x[i] * x[i], fl = Float(l)
            sumLX += w * x[i] * fl
            sumL2 += w * fl * fl
        }
        var scale: Float = sumL2 != 0 ? sumLX / sumL2 : 0
        var best = scale * sumLX
        for step in -9 ... 9 where step != 0 {
            iscale = -(fmax + 0.1 * Float(step)) / mx
            sumLX = 0; sumL2 = 0
            for i in 0 ..< n {
                let l = max(-nmax, min(nmax - 1, nearestInt(iscale * x[i])))
                let w = x[i] * x[i], fl = Float(l)
                sumLX += w * x[i] * fl
                sumL2 += w * fl * fl
            }
            if sumL2 > 0 && sumLX * sumLX > best * sumL2 {
                for i in 0 ..< n {
                    L[i] = Int8(nmax + max(-nmax, min(nmax - 1, nearestInt(iscale * x[i]))))
                }
                scale = sumLX / sumL2
                best = scale * sumLX
            }
        }
        return scale
    }

    /// Q6_K: sixteen sub-blocks of 16 with int8 scales relative to an f16 d,
    /// values in −32...31. Layout: 128 bytes of low nibbles, 64 bytes of high
    /// two-bit pairs, 16 scales, d.
    static func quantizeQ6K(_ x: [Float]) -> [UInt8] {
        let blocks = x.count / 256
        var out = [UInt8](repeating: 0, count: blocks * 210)
        x.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                var Lstore = [Int8](repeating: 0, count: 256)
                var scales = [Float](repeating: 0, count: 16)
                Lstore.withUnsafeMutableBufferPointer { Lb in
                    let L = Lb.baseAddress!
                    for b in 0 ..< blocks {
                        let v = src.baseAddress! + b * 256
                        let y = dst.baseAddress! + b * 210
                        var maxScale: Float = 0, maxAbsScale: Float = 0
                        for ib in 0 ..< 16 {
                            let s = makeQXQuants(n: 16, nmax: 32, x: v + 16 * ib, L: L + 16 * ib)
                            scales[ib] = s
                            if abs(s) > maxAbsScale { maxAbsScale = abs(s); maxScale = s }
                        }
                        if maxAbsScale < 1e-15 { continue }  // the block stays all zero bytes (d = 0)
                        let iscale = -128 / maxScale
                        putHalf(1 / iscale, y + 208)
                        let sc = y + 192
                        for ib in 0 ..< 16 {
                            sc[ib] = UInt8(bitPattern: Int8(truncatingIfNeeded: min(127, nearestInt(iscale * scales[ib]))))
                        }
                        let d0 = half(y + 208)
                        for j in 0 ..< 16 {
                            let d = d0 * Float(Int8(bitPattern: sc[j]))
                            if d == 0 { continue }
                            for i in 0 ..< 16 {
                                let l = max(-32, min(31, nearestInt(v[16 * j + i] / d)))
                                L[16 * j + i] = Int8(l + 32)
                            }
                        }
                        for (k, j) in stride(from: 0, to: 256, by: 128).enumerated() {
                            let ql = y + 64 * k, qh = y + 128 + 32 * k
                            for l in 0 ..< 32 {
                                let a = UInt8(L[j + l]), b2 = UInt8(L[j + l + 32])
                                let c = UInt8(L[j + l + 64]), e = UInt8(L[j + l + 96])
                                ql[l] = (a & 0xf) | ((c & 0xf) << 4)
                                ql[l + 32] = (b2 & 0xf) | ((e & 0xf) << 4)
                                qh[l] = (a >> 4) | ((b2 >> 4) << 2) | ((c >> 4) << 4) | ((e >> 4) << 6)
                            }
                        }
                    }
                }
            }
        }
        return out
    }
}
