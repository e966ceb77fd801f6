import Foundation

/// Turns ggml's block-quantized tensor data into float32.
///
/// Each routine reproduces gguf-py's `gguf.quants.dequantize` bit for bit: the
/// float operations are done in the same order (e.g. Q4_1 is `d * q + m`, two
/// roundings, never a fused multiply-add), so the results are identical.
/// Block layouts are the ones in ggml's `ggml-common.h`.
public enum GGMLDequantizer {
    /// The types `dequantize` handles, in ggml's numbering order.
    public static let supportedTypes: [GGMLType] = [
        .f32, .f16, .q4_0, .q4_1, .q5_0, .q5_1, .q8_0,
        .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .q8_K, .bf16,
    ]

    public static func isSupported(_ type: GGMLType) -> Bool {
        supportedTypes.contains(type)
    }

    /// Dequantizes `count` elements (a whole number of blocks) of `type` from `src`
    /// into `dst`. `src` must hold `type.byteCount(elements: count)` bytes and needs
    /// no alignment. `file` names the source in errors.
    public static func dequantize(_ type: GGMLType, from src: UnsafeRawPointer, count: Int,
                                  into dst: UnsafeMutablePointer<Float>, file: String = "dequantize") throws {
        let (blockElements, _) = type.blockLayout
        guard isSupported(type) else {
            throw FormatError(file, "cannot dequantize ggml type \(type): Loft supports \(supportedTypes.map(\.description).joined(separator: ", ")); requantize the model to one of these (e.g. with llama.cpp's llama-quantize)")
        }
        guard count >= 0, count % blockElements == 0 else {
            throw FormatError(file, "cannot dequantize \(count) elements of \(type): not a whole number of \(blockElements)-element blocks")
        }
        let blocks = count / blockElements
        switch type {
        case .f32: copyF32(src, count, dst)
        case .f16: f16(src, count, dst)
        case .bf16: bf16(src, count, dst)
        case .q4_0: q4_0(src, blocks, dst)
        case .q4_1: q4_1(src, blocks, dst)
        case .q5_0: q5_0(src, blocks, dst)
        case .q5_1: q5_1(src, blocks, dst)
        case .q8_0: q8_0(src, blocks, dst)
        case .q2_K: q2_K(src, blocks, dst)
        case .q3_K: q3_K(src, blocks, dst)
        case .q4_K: q4_K(src, blocks, dst)
        case .q5_K: q5_K(src, blocks, dst)
        case .q6_K: q6_K(src, blocks, dst)
        case .q8_K: q8_K(src, blocks, dst)
        default: break  // unreachable: checked above
        }
    }

    // MARK: - helpers

    @inline(__always)
    static func half(_ p: UnsafeRawPointer, _ offset: Int) -> Float {
        halfBitsToFloat(UInt16(littleEndian: p.loadUnaligned(fromByteOffset: offset, as: UInt16.self)))
    }

    @inline(__always)
    static func bytes(_ p: UnsafeRawPointer, _ offset: Int) -> UnsafePointer<UInt8> {
        (p + offset).assumingMemoryBound(to: UInt8.self)
    }

    // MARK: - float types

    static func copyF32(_ src: UnsafeRawPointer, _ n: Int, _ dst: UnsafeMutablePointer<Float>) {
        // memcpy keeps NaN payloads and needs no alignment.
        UnsafeMutableRawPointer(dst).copyMemory(from: src, byteCount: n * 4)
    }

    static func f16(_ src: UnsafeRawPointer, _ n: Int, _ dst: UnsafeMutablePointer<Float>) {
        for i in 0 ..< n {
            dst[i] = halfBitsToFloat(UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
        }
    }

    /// IEEE half → float, exact, without a library call per element (Swift's
    /// `Float(Float16)` calls compiler-rt on x86-64 without F16C). Identical to
    /// `Float(Float16(bitPattern: h))` for all 65536 inputs, NaN payloads included
    /// (tested), and to numpy's conversion.
    @inline(__always)
    public static func halfBitsToFloat(_ h: UInt16) -> Float {
        let sign = UInt32(h & 0x8000) << 16
        let em = UInt32(h & 0x7FFF)
        // Exponent and mantissa moved into float position, then rescaled by
        // 2^(127 - 15): exact for normals and subnormals alike.
        var bits = (Float(bitPattern: em << 13) * 0x1p112).bitPattern
        if em >= 0x7C00 { bits = (em << 13) | 0x7F80_0000 }  // inf, NaN (payload kept)
        return Float(bitPattern: bits | sign)
    }

    static func bf16(_ src: UnsafeRawPointer, _ n: Int, _ dst: UnsafeMutablePointer<Float>) {
        for i in 0 ..< n {
            let b = UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
            dst[i] = Float(bitPattern: UInt32(b) << 16)
        }
    }

    // MARK: - 32-element blocks

    // block_q4_0: d (f16), qs[16]; x = d * (q - 8); low nibbles are elements 0..15, high 16..31.
    static func q4_0(_ src: UnsafeRawPointer, _ blocks: Int, _ dst: UnsafeMutablePointer<Float>) {
        for b in 0 ..< blocks {
            let p = src + b * 18
            let d = half(p, 0)
            let qs = bytes(p, 2)
            let y = dst + b * 32
            // Two separate passes vectorize; interleaving y[j], y[j + 16] does not.
            for j in 0 ..< 16 { y[j] = d * Float(Int32(qs[j] & 0x0F) - 8) }
            for j in 0 ..< 16 { y[j + 16] = d * Float(Int32(qs[j] >> 4) - 8) }
        }
    }

    // block_q4_1: d, m (f16), qs[16]; x = d * q + m.
    static func q4_1(_ src: UnsafeRawPointer, _ blocks: Int, _ dst: UnsafeMutablePointer<Float>) {
        for b in 0 ..< blocks {
            let p = src + b * 20
            let d = half(p, 0), m = half(p, 2)
            let qs = bytes(p, 4)
            let y = dst + b * 32
            for j in 0 ..< 16 { y[j] = d * Float(qs[j] & 0x0F) + m }
            for j in 0 ..< 16 { y[j + 16] = d * Float(qs[j] >> 4) + m }
        }
    }

    // block_q5_0: d (f16), qh (u32: bit j is the 5th bit of element j), qs[16]; x = d * (q - 16).
    static func q5_0(_ src: UnsafeRawPointer, _ blocks: Int, _ dst: UnsafeMutablePointer<Float>) {
        for b in 0 ..< blocks {
            let p = src + b * 22
            let d = half(p, 0)
            let qh = UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 2, as: UInt32.self))
            let qs = bytes(p, 6)
            let y = dst + b * 32
            for j in 0 ..< 16 {
                let q = qs[j]
                let h0 = Int32((qh &>> UInt32(j)) & 1) << 4
                let h1 = Int32((qh &>> UInt32(j + 16)) & 1) << 4
                y[j] = d * Float((Int32(q & 0x0F) | h0) - 16)
                y[j + 16] = d * Float((Int32(q >> 4) | h1) - 16)
            }
        }
    }

    // block_q5_1: d, m (f16), qh (u32), qs[16]; x = d * q + m.
    static func q5_1(_ src: UnsafeRawPointer, _ blocks: Int, _ dst: UnsafeMutablePointer<Float>) {
        for b in 0 ..< blocks {
            let p = src + b * 24
            let d = half(p, 0), m = half(p, 2)
            let qh = UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
            let qs = bytes(p, 8)
            let y = dst + b * 32
            for j in 0 ..< 16 {
                let q = qs[j]
                let h0 = UInt32((qh &>> UInt32(j)) & 1) << 4
                let h1 = UInt32((qh &>> UInt32(j + 16)) & 1) << 4
                let lo = d * Float(UInt32(q & 0x0F) | h0)
                let hi = d * Float(UInt32(q >> 4) | h1)
                y[j] = lo + m
                y[j + 16] = hi + m
            }
        }
    }

    // block_q8_0: d (f16), qs[32] (int8); x = q * d.
    static func q8_0(_ src: UnsafeRawPointer, _ blocks: Int, _ dst: UnsafeMutablePointer<Float>) {
        for b in 0 ..< blocks {
            let p = src + b * 34
            let d = half(p, 0)
            let qs = (p + 2).assumingMemoryBound(to: Int8.self)
            let y = dst + b * 32
            for j in 0 ..< 32 { y[j] = Float(qs[j]) * d }
        }
    }

    // MARK: - K-quants (256-element super-blocks)

    // block_q2_K: scales[16] (low nibble: scale, high: min), qs[64], d, dmin (f16).
    // Element 128h + 32s + l (h < 2, s < 4, l < 32) is (qs[32h + l] >> 2s) & 3, in
    // sub-block (128h + 32s + l) / 16; x = (d * sc) * q - (dmin * mn).
    static func q2_K(_ src: UnsafeRawPointer, _ blocks: Int, _ dst: UnsafeMutablePointer<Float>) {
        for b in 0 ..< blocks {
            let p = src + b * 84
            let scales = bytes(p, 0), qs = bytes(p, 16)
            let d = half(p, 80), dmin = half(p, 82)
            let y = dst + b * 256
            for h in 0 ..< 2 {
                for s in 0 ..< 4 {
                    for half16 in 0 ..< 2 {
                        let e0 = 128 * h + 32 * s + 16 * half16
                        let sc = scales[e0 / 16]
                        let dl = d * Float(sc & 0x0F)
                        let ml = dmin * Float(sc >> 4)
                        let q = qs + 32 * h + 16 * half16
                        let shift = UInt8(2 * s)
                        let yo = y + e0
                        for l in 0 ..< 16 { yo[l] = dl * Float((q[l] &>> shift) & 3) - ml }
                    }
                }
            }
        }
    }

    // block_q3_K: hmask[32], qs[64], scales[12] (16 six-bit scales), d (f16).
    // Element 128h + 32s + l: low bits (qs[32h + l] >> 2s) & 3, high bit
    // (hmask[l] >> (4h + s)) & 1; q = low - (high ? 0 : 4); x = (d * (sc - 32)) * q.
    static func q3_K(_ src: UnsafeRawPointer, _ blocks: Int, _ dst: UnsafeMutablePointer<Float>) {
        for b in 0 ..< blocks {
            let p = src + b * 110
            let hmask = bytes(p, 0), qs = bytes(p, 32), sb = bytes(p, 96)
            let d = half(p, 108)
            let y = dst + b * 256
            for h in 0 ..< 2 {
                for s in 0 ..< 4 {
                    let shift = UInt8(2 * s)
                    let bit = UInt8(4 * h + s)
                    for half16 in 0 ..< 2 {
                        let e0 = 128 * h + 32 * s + 16 * half16
                        let i = e0 / 16
                        let low = i < 8 ? sb[i] & 0x0F : sb[i - 8] >> 4
                        let high = (sb[8 + i % 4] >> UInt8(2 * (i / 4))) & 3
                        let sc = Int32(low | (high << 4)) - 32
                        let dl = d * Float(sc)
                        let q = qs + 32 * h + 16 * half16
                        let hm = hmask + 16 * half16
                        let yo = y + e0
                        for l in 0 ..< 16 {
                            let lo = Int32((q[l] &>> shift) & 3)
                            let hi = Int32(((hm[l] &>> bit) & 1) ^ 1) << 2  // 4 when the mask bit is clear
                            yo[l] = dl * Float(lo - hi)
                        }
                    }
                }
            }
        }
    }

    /// The j-th (scale, min) pair of the 12-byte packed six-bit table of Q4_K / Q5_K.
    @inline(__always)
    static func scaleMinK4(_ j: Int, _ q: UnsafePointer<UInt8>) -> (UInt8, UInt8) {
        if j < 4 { return (q[j] & 63, q[j + 4] & 63) }
        return ((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }

    // block_q4_K: d, dmin (f16), scales[12], qs[128]. Sub-block j (32 elements)
    // reads nibble j % 2 of qs[32 (j / 2) + l]; x = (d * sc) * q - (dmin * mn).
    static func q4_K(_ src: UnsafeRawPointer, _ blocks: Int, _ dst: UnsafeMutablePointer<Float>) {
        for b in 0 ..< blocks {
            let p = src + b * 144
            let d = half(p, 0), dmin = half(p, 2)
            let sb = bytes(p, 4), qs = bytes(p, 16)
            let y = dst + b * 256
            for j in 0 ..< 8 {
                let (sc, mn) = scaleMinK4(j, sb)
                let d1 = d * Float(sc), m1 = dmin * Float(mn)
                let q = qs + 32 * (j / 2)
                let shift = UInt8(4 * (j % 2))
                let yj = y + 32 * j
                for l in 0 ..< 32 { yj[l] = d1 * Float((q[l] &>> shift) & 0x0F) - m1 }
            }
        }
    }

    // block_q5_K: d, dmin (f16), scales[12], qh[32], qs[128]. As Q4_K, with the
    // 5th bit of sub-block j's element l in (qh[l] >> j) & 1.
    static func q5_K(_ src: UnsafeRawPointer, _ blocks: Int, _ dst: UnsafeMutablePointer<Float>) {
        for b in 0 ..< blocks {
            let p = src + b * 176
            let d = half(p, 0), dmin = half(p, 2)
            let sb = bytes(p, 4), qh = bytes(p, 16), qs = bytes(p, 48)
            let y = dst + b * 256
            for j in 0 ..< 8 {
                let (sc, mn) = scaleMinK4(j, sb)
                let d1 = d * Float(sc), m1 = dmin * Float(mn)
                let q = qs + 32 * (j / 2)
                let shift = UInt8(4 * (j % 2))
                let bit = UInt8(j)
                let yj = y + 32 * j
                for l in 0 ..< 32 {
                    let v = ((q[l] &>> shift) & 0x0F) | (((qh[l] &>> bit) & 1) << 4)
                    yj[l] = d1 * Float(v) - m1
                }
            }
        }
    }

    // block_q6_K: ql[128], qh[64], scales[16] (int8), d (f16). Element
    // 128h + 32g + l: low nibble of ql[64h + 32 (g % 2) + l] >> 4 (g / 2), high
    // bits (qh[32h + l] >> 2g) & 3; x = (d * sc[e / 16]) * (q - 32).
    static func q6_K(_ src: UnsafeRawPointer, _ blocks: Int, _ dst: UnsafeMutablePointer<Float>) {
        for b in 0 ..< blocks {
            let p = src + b * 210
            let ql = bytes(p, 0), qh = bytes(p, 128)
            let sc = (p + 192).assumingMemoryBound(to: Int8.self)
            let d = half(p, 208)
            let y = dst + b * 256
            for h in 0 ..< 2 {
                for g in 0 ..< 4 {
                    let lq = ql + 64 * h + 32 * (g % 2)
                    let hq = qh + 32 * h
                    let lshift = UInt8(4 * (g / 2)), hshift = UInt8(2 * g)
                    for half16 in 0 ..< 2 {
                        let e0 = 128 * h + 32 * g + 16 * half16
                        let dl = d * Float(sc[e0 / 16])
                        let a = lq + 16 * half16, c = hq + 16 * half16, yo = y + e0
                        for l in 0 ..< 16 {
                            let v = Int32(((a[l] &>> lshift) & 0x0F) | (((c[l] &>> hshift) & 3) << 4)) - 32
                            yo[l] = dl * Float(v)
                        }
                    }
                }
            }
        }
    }

    // block_q8_K: d (f32), qs[256] (int8), bsums[16] (int16, unused here); x = d * q.
    static func q8_K(_ src: UnsafeRawPointer, _ blocks: Int, _ dst: UnsafeMutablePointer<Float>) {
        for b in 0 ..< blocks {
            let p = src + b * 292
            let d = Float(bitPattern: UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 0, as: UInt32.self)))
            let qs = (p + 4).assumingMemoryBound(to: Int8.self)
            let y = dst + b * 256
            for j in 0 ..< 256 { y[j] = Float(qs[j]) * d }
        }
    }
}

// MARK: - whole tensors

extension GGUFFile {
    /// Rows of a tensor: the product of all dimensions but the innermost.
    public func rowCount(_ info: GGUFTensorInfo) -> Int { info.elementCount / info.dimensions[0] }

    /// The whole tensor as float32, row-major (element order as stored).
    public func dequantize(_ info: GGUFTensorInfo) throws -> [Float] {
        let n = info.elementCount
        return try [Float](unsafeUninitializedCapacity: n) { buf, initialized in
            try dequantizeRows(info, rows: 0 ..< rowCount(info), into: buf.baseAddress!)
            initialized = n
        }
    }

    /// Dequantizes rows `rows` of the tensor (a row is `dimensions[0]` elements)
    /// into `dst`, which must have room for `rows.count * dimensions[0]` floats.
    /// Large ranges are split across cores.
    public func dequantizeRows(_ info: GGUFTensorInfo, rows: Range<Int>, into dst: UnsafeMutablePointer<Float>) throws {
        let rowElements = info.dimensions[0]
        let total = rowCount(info)
        guard rows.lowerBound >= 0, rows.upperBound <= total else {
            throw FormatError(path, "tensor \(info.name): rows \(rows) are out of range (it has \(total) rows)")
        }
        guard GGMLDequantizer.isSupported(info.type) else {
            throw FormatError(path, "tensor \(info.name) is \(info.type), which Loft cannot dequantize: supported types are \(GGMLDequantizer.supportedTypes.map(\.description).joined(separator: ", ")); requantize the model to one of these")
        }
        guard let rowBytes = info.type.byteCount(elements: rowElements) else {
            throw FormatError(path, "tensor \(info.name): \(rowElements) elements per row is not a multiple of the \(info.type) block size")
        }
        let data = self.data(for: info)
        guard let base = data.baseAddress, rows.upperBound * rowBytes <= data.count else {
            if rows.isEmpty { return }
            throw FormatError(path, "tensor \(info.name): its data is shorter than its shape says")
        }
        let src = base + rows.lowerBound * rowBytes
        let n = rows.count
        // Split big jobs across cores; each chunk is a whole number of rows.
        let work = n * rowElements
        let chunks = work >= 1 << 20 ? min(ProcessInfo.processInfo.activeProcessorCount * 2, n) : 1
        if chunks <= 1 {
            try GGMLDequantizer.dequantize(info.type, from: src, count: work, into: dst, file: path)
            return
        }
        let per = (n + chunks - 1) / chunks
        let type = info.type, file = path
        var failure: Error?
        let lock = NSLock()
        DispatchQueue.concurrentPerform(iterations: chunks) { c in
            let r0 = c * per, r1 = min(n, r0 + per)
            guard r0 < r1 else { return }
            do {
                try GGMLDequantizer.dequantize(type, from: src + r0 * rowBytes, count: (r1 - r0) * rowElements,
                                               into: dst + r0 * rowElements, file: file)
            } catch {
                lock.lock(); failure = error; lock.unlock()
            }
        }
        if let failure { throw failure }
    }
}
