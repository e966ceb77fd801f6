import Foundation
import LoftFormats
import LoftTensors

/// How a frozen base weight is kept in memory. Training computes in f32
/// whatever the storage: compact kinds are dequantized a tile of rows at a
/// time inside the linear layers (see `CPUBackend.linear(_:frozen:...)`).
public enum BaseWeightKind: String, Sendable, Codable, CaseIterable {
    /// f32, as loaded (GGUF blocks dequantized once at load).
    case f32
    /// bfloat16 (round to nearest even), 2 bytes a weight.
    case bf16
    /// bitsandbytes NF4 / FP4, blocks of 64 (QLoRA).
    case nf4, fp4
    /// bitsandbytes LLM.int8 rows (CB int8 + SCB per row).
    case int8
    /// A GGUF file's own blocks (Q4_0, Q4_1, Q8_0, Q4_K, Q6_K, …), read in place.
    case gguf
}

/// The storage of a model's frozen projection weights, with the options that
/// change its bytes (what `loft merge` needs to rebuild the same base).
public struct BaseWeightFormat: Sendable, Codable, Equatable {
    public var kind: BaseWeightKind
    /// Quantize the 4-bit absmax to 8 bits (bnb_4bit_use_double_quant).
    public var doubleQuant: Bool

    public init(kind: BaseWeightKind = .f32, doubleQuant: Bool = false) {
        self.kind = kind
        self.doubleQuant = doubleQuant
    }

    public static let f32 = BaseWeightFormat()

    /// A short description, e.g. "nf4 (double quant)".
    public var summary: String {
        switch kind {
        case .nf4, .fp4: return kind.rawValue + (doubleQuant ? " (double quant)" : "")
        default: return kind.rawValue
        }
    }

    /// The file an adapter directory records its base's storage in, so merge
    /// and generation rebuild the same base the adapter was trained on.
    public static let fileName = "loft_base_weights.json"

    public func write(toDirectory dir: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(self).write(to: URL(fileURLWithPath: dir + "/" + Self.fileName), options: .atomic)
    }

    /// The format an adapter directory records, or nil when it records none
    /// (adapters trained on an f32 base, or written by PEFT).
    public static func read(adapterDirectory dir: String) throws -> BaseWeightFormat? {
        let path = dir + "/" + fileName
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        do {
            return try JSONDecoder().decode(BaseWeightFormat.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
        } catch {
            throw FormatError(path, "is not a valid base-weight record (\(error)); delete it to use an f32 base, or re-run training")
        }
    }
}

/// One frozen weight [rows, cols] in one of the `BaseWeightKind` storages.
/// Dense f32 weights are used directly by the backend's GEMM; the others
/// hand out f32 rows through `FrozenMatrix`.
public final class FrozenWeight: FrozenMatrix, @unchecked Sendable {
    public enum Storage {
        case dense(Tensor)
        case bf16([UInt16])
        case bnb4(BnB4BitWeight)
        case int8(BnBInt8Weight)
        /// GGUF blocks in place in the file's memory map; `rowMap[r]` is the
        /// file row holding Hugging Face row r (llama.cpp's q/k permutation).
        case ggml(type: GGMLType, data: UnsafeRawPointer, rowBytes: Int, rowMap: [Int32]?, owner: AnyObject)
    }

    public let storage: Storage
    public let rows: Int
    public let cols: Int

    public init(dense t: Tensor) {
        precondition(t.rank == 2, "a frozen weight is a matrix, got \(t.shape)")
        storage = .dense(t)
        rows = t.shape[0]
        cols = t.shape[1]
    }

    init(storage: Storage, rows: Int, cols: Int) {
        self.storage = storage
        self.rows = rows
        self.cols = cols
    }

    /// Converts a CPU f32 weight into `format` (`.gguf` is not a conversion:
    /// use `ggml(...)`; here it keeps f32).
    public static func converting(_ w: Tensor, to format: BaseWeightFormat) -> FrozenWeight {
        let (rows, cols) = (w.shape[0], w.rowSize)
        switch format.kind {
        case .f32, .gguf:
            return FrozenWeight(dense: w)
        case .bf16:
            let p = w.floats
            return FrozenWeight(storage: .bf16((0 ..< rows * cols).map { BFloat16.fromFloat(p[$0]) }), rows: rows, cols: cols)
        case .nf4, .fp4:
            let q = BnBQuantizer.quantize4bit(w.floats, rows: rows, cols: cols, type: format.kind == .nf4 ? .nf4 : .fp4,
                                              doubleQuant: format.doubleQuant)
            return FrozenWeight(storage: .bnb4(q), rows: rows, cols: cols)
        case .int8:
            return FrozenWeight(storage: .int8(BnBQuantizer.quantizeInt8Rows(w.floats, rows: rows, cols: cols)), rows: rows, cols: cols)
        }
    }

    /// GGUF blocks read in place. Throws when Loft cannot dequantize the type
    /// or a row is not a whole number of blocks. `permuteHeads` undoes
    /// llama.cpp's q/k row order (heads of q, or KV heads for k).
    public static func ggml(_ info: GGUFTensorInfo, in file: GGUFFile, permuteHeads: Int?) throws -> FrozenWeight {
        let shape = info.shape
        guard shape.count == 2 else { throw FormatError(file.path, "\(info.name) has shape \(shape); a projection weight is a matrix") }
        let bytes = file.data(for: info)
        return try ggml(type: info.type, data: bytes.baseAddress!, rows: shape[0], cols: shape[1], permuteHeads: permuteHeads,
                        owner: file, source: file.path + ": " + info.name)
    }

    /// GGML blocks from memory: `bytes` holds `rows` rows of `cols` elements.
    public static func ggml(type: GGMLType, bytes: [UInt8], rows: Int, cols: Int, permuteHeads: Int? = nil) throws -> FrozenWeight {
        guard let rowBytes = type.byteCount(elements: cols), bytes.count == rows * rowBytes else {
            throw FormatError("ggml weight", "\(bytes.count) bytes do not hold \(rows) rows of \(cols) \(type) elements")
        }
        let copy = LoftTensors.Storage(cpuBytes: max(bytes.count, 1), zeroed: false)
        bytes.withUnsafeBytes { copy.pointer.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
        return try ggml(type: type, data: UnsafeRawPointer(copy.pointer), rows: rows, cols: cols, permuteHeads: permuteHeads,
                        owner: copy, source: "ggml weight")
    }

    static func ggml(type: GGMLType, data: UnsafeRawPointer, rows: Int, cols: Int, permuteHeads: Int?, owner: AnyObject,
                     source: String) throws -> FrozenWeight {
        guard GGMLDequantizer.isSupported(type), let rowBytes = type.byteCount(elements: cols),
              cols % type.blockLayout.elements == 0 else {
            throw FormatError(source, "is \(type) with rows of \(cols), which Loft cannot keep quantized; set keep_gguf_quantization: false")
        }
        var rowMap: [Int32]?
        if let heads = permuteHeads {
            guard heads > 0, rows % (2 * heads) == 0 else {
                throw FormatError(source, "\(rows) rows do not split into \(heads) heads of two halves; check the head count")
            }
            // Hugging Face row i·half + k of each head is the file's row 2k + i.
            let headRows = rows / heads, half = headRows / 2
            var map = [Int32](repeating: 0, count: rows)
            for h in 0 ..< heads {
                for i in 0 ..< 2 { for k in 0 ..< half { map[h * headRows + i * half + k] = Int32(h * headRows + 2 * k + i) } }
            }
            rowMap = map
        }
        return FrozenWeight(storage: .ggml(type: type, data: data, rowBytes: rowBytes, rowMap: rowMap, owner: owner),
                            rows: rows, cols: cols)
    }

    /// The blocks of a GGUF-stored weight, for the decoding kernels.
    public var ggmlBlocks: GGMLBlocks? {
        guard case .ggml(let type, let data, let rowBytes, let rowMap, _) = storage else { return nil }
        return GGMLBlocks(type: type, data: data, rowBytes: rowBytes, rowMap: rowMap)
    }

    /// GGUF blocks of a type the decoding kernels multiply in place (unless
    /// `LOFT_QDOT=off`).
    public var decodesInPlace: Bool {
        guard let b = ggmlBlocks, QuantizedDecoding.mode != nil else { return false }
        return QuantizedDecoding.supports(b.type)
    }

    /// An f32 copy of GGUF blocks kept beside them for products of many rows
    /// (prompts): those then run as one GEMM instead of dequantizing every
    /// tile for every prompt, while decode rows still read the blocks
    /// (`keepPromptCopy`; the serving engine's choice, under a memory budget).
    public private(set) var promptCopy: Tensor?

    /// Keeps `promptCopy` (only for GGUF blocks the decoding kernels read in
    /// place; others are dense already or not decoded in place). Returns the
    /// bytes added.
    @discardableResult
    public func keepPromptCopy() -> Int {
        guard promptCopy == nil, decodesInPlace else { return 0 }
        let copy = Tensor.uninitialized([rows, cols])
        dequantizeRows(0 ..< rows, into: copy.floats)
        promptCopy = copy
        return copy.byteCount
    }

    /// The f32 tensor when stored dense (the backend multiplies it directly).
    public var dense: Tensor? {
        if case .dense(let t) = storage { return t }
        return nil
    }

    /// The whole weight as an f32 tensor: the stored one when dense, else a
    /// fresh dequantized copy (for merging and export, not for the forward).
    public func dequantized() -> Tensor {
        if let dense { return dense }
        let t = Tensor.uninitialized([rows, cols])
        dequantizeRows(0 ..< rows, into: t.floats)
        return t
    }

    public func dequantizeRows(_ range: Range<Int>, into dst: UnsafeMutablePointer<Float>) {
        switch storage {
        case .dense(let t):
            dst.update(from: t.floats + range.lowerBound * cols, count: range.count * cols)
        case .bf16(let bits):
            bits.withUnsafeBufferPointer { b in
                for i in 0 ..< range.count * cols { dst[i] = BFloat16.toFloat(b[range.lowerBound * cols + i]) }
            }
        case .bnb4(let q):
            q.dequantize(range.lowerBound * cols ..< range.upperBound * cols, into: dst)
        case .int8(let q):
            q.dequantizeRows(range, into: dst)
        case .ggml(let type, let data, let rowBytes, let rowMap, _):
            for r in range {
                let fileRow = rowMap.map { Int($0[r]) } ?? r
                // Type and row length were checked when the weight was made.
                try? GGMLDequantizer.dequantize(type, from: data + fileRow * rowBytes, count: cols,
                                                into: dst + (r - range.lowerBound) * cols)
            }
        }
    }

    /// Bytes this weight holds (for a GGUF weight, the mapped bytes it reads).
    public var byteCount: Int {
        switch storage {
        case .dense(let t): return t.byteCount
        case .bf16(let b): return b.count * 2
        case .bnb4(let q): return q.byteCount
        case .int8(let q): return q.byteCount
        case .ggml(_, _, let rowBytes, let rowMap, _): return rowBytes * rows + (rowMap?.count ?? 0) * 4
        }
    }

    /// What the storage is, for `loft info` and run metadata.
    public var kindDescription: String {
        switch storage {
        case .dense: return "f32"
        case .bf16: return "bf16"
        case .bnb4(let q):
            if case .double = q.absmax { return q.type.rawValue + "+dq" }
            return q.type.rawValue
        case .int8: return "int8"
        case .ggml(let type, _, _, _, _): return type.description
        }
    }
}
