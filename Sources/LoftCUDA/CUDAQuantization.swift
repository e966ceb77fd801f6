import Foundation
import LoftFormats
import LoftTensors

/// bitsandbytes' NF4 format, on the host: the reference the GPU kernel is
/// checked against, and a quantizer for tests. Blocks of `blocksize` values
/// share one absmax (bitsandbytes' default for QLoRA is 64); each byte holds
/// two 4-bit codes, the first value in the high nibble.
public enum NF4 {
    /// bitsandbytes' NF4 levels by code (the same table the CPU quantizer uses).
    public static let codebook: [Float] = BnBQuantizer.table(.nf4)

    public static func dequantize(packed: [UInt8], absmax: [Float], count: Int, blocksize: Int = 64) -> [Float] {
        (0 ..< count).map { i in
            let byte = packed[i >> 1]
            let code = i & 1 == 1 ? Int(byte & 0x0F) : Int(byte >> 4)
            return codebook[code] * absmax[i / blocksize]
        }
    }

    /// Nearest code per value, scaled by its block's absmax.
    public static func quantize(_ values: [Float], blocksize: Int = 64) -> (packed: [UInt8], absmax: [Float]) {
        let blocks = (values.count + blocksize - 1) / blocksize
        var absmax = [Float](repeating: 0, count: blocks)
        for b in 0 ..< blocks {
            absmax[b] = values[(b * blocksize) ..< min(values.count, (b + 1) * blocksize)].reduce(0) { max($0, abs($1)) }
        }
        var packed = [UInt8](repeating: 0, count: (values.count + 1) / 2)
        for (i, v) in values.enumerated() {
            let a = absmax[i / blocksize]
            let x = a > 0 ? v / a : 0
            let code = codebook.indices.min { abs(codebook[$0] - x) < abs(codebook[$1] - x) }!
            packed[i >> 1] |= i & 1 == 1 ? UInt8(code) : UInt8(code) << 4
        }
        return (packed, absmax)
    }
}

extension CUDABackend {
    /// NF4 weights (bitsandbytes layout, plain f32 absmax) dequantized on the
    /// GPU into a new f32 tensor of `shape`.
    public func dequantizeNF4(packed: [UInt8], absmax: [Float], shape: [Int], blocksize: Int = 64) -> Tensor {
        let count = shape.reduce(1, *)
        precondition(packed.count >= (count + 1) / 2 && absmax.count >= (count + blocksize - 1) / blocksize,
                     "dequantizeNF4: \(packed.count) bytes and \(absmax.count) scales for \(count) values")
        let out = uninitialized(shape)
        let p = gpu.temporary(packed), a = gpu.temporary(absmax)
        gpu.launch("loft_dequant_nf4", grid: CUDADevice.grid(count), block: 256,
                   [.pointer(UInt64(UInt(bitPattern: p.pointer))), .pointer(UInt64(UInt(bitPattern: a.pointer))),
                    .pointer(ptr(out)), .long(count), .int(blocksize)])
        withExtendedLifetime((p, a)) {}
        return out
    }

    /// The GGUF block types dequantized on the GPU.
    public static let gpuDequantizedGGUFTypes: [GGMLType] = [.q4_0, .q8_0]

    /// GGUF Q4_0 or Q8_0 blocks (as stored in the file) dequantized on the GPU
    /// into a new f32 tensor of `shape`.
    public func dequantizeGGUF(_ type: GGMLType, blocks: [UInt8], shape: [Int]) throws -> Tensor {
        let count = shape.reduce(1, *)
        let kernel: String
        switch type {
        case .q4_0: kernel = "loft_dequant_q4_0"
        case .q8_0: kernel = "loft_dequant_q8_0"
        default:
            throw CUDAError("the GPU dequantizes GGUF \(Self.gpuDequantizedGGUFTypes.map(\.description).joined(separator: ", ")), not \(type); dequantize \(type) on the CPU (GGMLDequantizer) and upload the result")
        }
        let (elements, bytes) = type.blockLayout
        guard count % elements == 0, blocks.count >= count / elements * bytes else {
            throw CUDAError("\(type): \(blocks.count) bytes cannot hold \(count) values in \(elements)-value blocks of \(bytes) bytes")
        }
        let out = uninitialized(shape)
        let b = gpu.temporary(blocks)
        gpu.launch(kernel, grid: CUDADevice.grid(count), block: 256,
                   [.pointer(UInt64(UInt(bitPattern: b.pointer))), .pointer(ptr(out)), .long(count / elements)])
        withExtendedLifetime(b) {}
        return out
    }
}
