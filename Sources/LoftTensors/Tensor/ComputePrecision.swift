/// The precision the GEMMs of a training step compute in, as PyTorch's
/// autocast (or a GPU's tensor cores) does it: GEMM inputs rounded to bf16 or
/// fp16, products accumulated in f32, outputs f32. Parameters, gradients,
/// optimizer state, norms, softmax, rotary and the loss stay f32 whatever
/// the precision.
public enum ComputePrecision: String, Sendable, Codable, CaseIterable {
    case fp32, bf16, fp16

    /// Rounds `buffer` in place to this precision's grid (fp32: unchanged).
    @inline(__always)
    public func round(_ buffer: UnsafeMutableBufferPointer<Float>) {
        switch self {
        case .fp32: return
        case .bf16: ReducedPrecision.roundToBF16(buffer)
        case .fp16: ReducedPrecision.roundToFP16(buffer)
        }
    }
}

/// Rounding f32 values to the bf16 and fp16 grids, kept as f32 (round to
/// nearest, ties to even, as `x.to(torch.bfloat16)` / `x.to(torch.float16)`).
/// Plain integer arithmetic on the bit patterns, written as loops the
/// compiler vectorises.
public enum ReducedPrecision {
    /// bf16: the top 16 bits of the f32, rounded; overflow past bf16's largest
    /// finite value becomes ±inf (the carry reaches the exponent); NaN stays NaN.
    public static func roundToBF16(_ buffer: UnsafeMutableBufferPointer<Float>) {
        guard let p = buffer.baseAddress else { return }
        let words = UnsafeMutableRawPointer(p).assumingMemoryBound(to: UInt32.self)
        for i in 0 ..< buffer.count {
            let bits = words[i]
            let rounded = (bits &+ 0x7FFF &+ ((bits >> 16) & 1)) & 0xFFFF_0000
            // NaN: keep it a (quiet) NaN rather than let the carry turn it into inf or another sign.
            words[i] = (bits & 0x7FFF_FFFF) > 0x7F80_0000 ? bits | 0x0040_0000 : rounded
        }
    }

    /// fp16: 10 mantissa bits for |x| ≥ 2⁻¹⁴ (fp16's smallest normal),
    /// multiples of 2⁻²⁴ below it (fp16's subnormals); |x| that rounds to
    /// 65536 or more becomes ±inf; NaN stays NaN.
    public static func roundToFP16(_ buffer: UnsafeMutableBufferPointer<Float>) {
        guard let p = buffer.baseAddress else { return }
        let words = UnsafeMutableRawPointer(p).assumingMemoryBound(to: UInt32.self)
        for i in 0 ..< buffer.count {
            let bits = words[i]
            let sign = bits & 0x8000_0000, magnitude = bits & 0x7FFF_FFFF
            var rounded: UInt32
            if magnitude >= 0x3880_0000 {          // 2⁻¹⁴: fp16 normal (or inf/NaN)
                rounded = (magnitude &+ 0xFFF &+ ((magnitude >> 13) & 1)) & 0xFFFF_E000
                if rounded >= 0x4780_0000 { rounded = 0x7F80_0000 }   // ≥ 65536: overflow to inf
                if magnitude > 0x7F80_0000 { rounded = magnitude | 0x0040_0000 }  // NaN
            } else {
                // Subnormal grid 2⁻²⁴ = the f32 ulp of 0.5: adding 0.5 rounds there (ties to even).
                rounded = ((Float(bitPattern: magnitude) + 0.5) - 0.5).bitPattern
            }
            words[i] = rounded | sign
        }
    }
}
