import Foundation

/// Encodes f32 values as ggml tensor data: F32, F16, BF16, and Q8_0 / Q4_0
/// as ggml's reference quantizers (`quantize_row_q8_0_ref`,
/// `quantize_row_q4_0_ref`) do, which the `gguf` Python package mirrors
/// byte for byte (checked in GGUFWriterTests against its output).
public enum GGMLQuantizer {
    public static let supportedTypes: [GGMLType] = [.f32, .f16, .bf16, .q8_0, .q4_0]

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
