/// Element types a tensor can hold. Quantized block formats (NF4, GGUF's
/// Q4_K…) are added as cases that name their block layout; operations that
/// cannot read a type say so instead of guessing.
public enum DType: String, Sendable, CaseIterable {
    case f32, f16, bf16, i32

    public var byteSize: Int {
        switch self {
        case .f32, .i32: return 4
        case .f16, .bf16: return 2
        }
    }

    public var isFloatingPoint: Bool { self != .i32 }
}

/// bfloat16 conversions with round-to-nearest-even, as PyTorch does.
public enum BFloat16 {
    @inline(__always)
    public static func fromFloat(_ x: Float) -> UInt16 {
        let bits = x.bitPattern
        if x.isNaN { return UInt16(truncatingIfNeeded: bits >> 16) | 0x40 }
        let rounding = UInt32(0x7FFF) + ((bits >> 16) & 1)
        return UInt16(truncatingIfNeeded: (bits &+ rounding) >> 16)
    }

    @inline(__always)
    public static func toFloat(_ h: UInt16) -> Float {
        Float(bitPattern: UInt32(h) << 16)
    }
}
