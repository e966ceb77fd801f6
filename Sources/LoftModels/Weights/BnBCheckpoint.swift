import Foundation
import LoftFormats
import LoftTensors

/// A Hugging Face directory that transformers' `save_pretrained` wrote from a
/// bitsandbytes-quantized model (the Hub's `-bnb-4bit` and 8-bit repositories).
/// Its projections are read as stored — 4-bit codes with their absmax (maybe
/// double-quantized), or LLM.int8 rows with their scales — and become the
/// frozen base as they are, never dequantized to f32 and quantized again.
///
/// Per quantized `X.weight`, 4-bit: `X.weight` (the packed codes, two a byte,
/// as uint8 or reinterpreted in `bnb_4bit_quant_storage`), `X.weight.absmax`
/// (f32, or uint8 with `nested_absmax` + `nested_quant_map` when double
/// quantized), `X.weight.quant_map` and the JSON `X.weight.quant_state.
/// bitsandbytes__nf4|fp4` (quant_type, blocksize, shape, nested_offset);
/// 8-bit: `X.weight` int8 [out, in], `X.SCB` f32 [out], `X.weight_format`.
/// Modules bnb skipped (`llm_int8_skip_modules`, lm_head) stay float.
public struct BnBCheckpointFormat: Sendable, Equatable {
    /// How the quantized projections are stored (nf4/fp4 ± double quant, or int8).
    public let format: BaseWeightFormat

    /// Block sizes bitsandbytes writes (`quantize_4bit` accepts these).
    public static let supportedBlocksizes = [32, 64, 128, 256, 512, 1024, 2048, 4096]

    /// Reads `quantization_config` of a config.json: nil when there is none;
    /// throws for a quantization Loft cannot read (GPTQ, AWQ, …).
    public static func read(config json: [String: Any], source: String) throws -> BnBCheckpointFormat? {
        guard let q = json["quantization_config"] else { return nil }
        guard let qc = q as? [String: Any] else {
            throw FormatError(source, "quantization_config is not an object; remove it if the weights are not quantized")
        }
        let method = qc["quant_method"] as? String ?? "bitsandbytes"
        guard method == "bitsandbytes" else {
            throw FormatError(source, "quantization_config.quant_method is '\(method)'; Loft reads bitsandbytes checkpoints only — use the unquantized model (or its bnb-4bit version)")
        }
        func flag(_ key: String) -> Bool { (qc[key] as? Bool) ?? (qc["_" + key] as? Bool) ?? false }
        if flag("load_in_8bit") { return BnBCheckpointFormat(format: BaseWeightFormat(kind: .int8)) }
        guard flag("load_in_4bit") else {
            throw FormatError(source, "quantization_config (bitsandbytes) sets neither load_in_4bit nor load_in_8bit; set the one the weights were saved with")
        }
        let type = qc["bnb_4bit_quant_type"] as? String ?? "fp4"
        guard let kind = BaseWeightKind(rawValue: type), kind == .nf4 || kind == .fp4 else {
            throw FormatError(source, "quantization_config.bnb_4bit_quant_type is '\(type)'; bitsandbytes writes nf4 or fp4")
        }
        // The tensors decide per weight; this is what the config announces.
        let doubleQuant = qc["bnb_4bit_use_double_quant"] as? Bool ?? false
        return BnBCheckpointFormat(format: BaseWeightFormat(kind: kind, doubleQuant: doubleQuant))
    }

    /// The storage a model loaded from this checkpoint gets when `requested`
    /// is asked for: the checkpoint's own. f32 and bf16 requests (a plain
    /// LoRA config, `bf16: true`) take it as it is, as transformers loads such
    /// a repository quantized whatever the training config says; asking for
    /// the other bnb kind would need a re-quantization of already-rounded
    /// weights, which is refused.
    public func resolve(_ requested: BaseWeightFormat, source: String) throws -> BaseWeightFormat {
        switch requested.kind {
        case .f32, .bf16: return format
        case format.kind: return format
        default:
            let asked = requested.kind == .int8 ? "load_in_8bit" : requested.kind == .gguf ? "keep_gguf_quantization" : "load_in_4bit with bnb_4bit_quant_type: \(requested.kind.rawValue)"
            throw FormatError(source, "is already quantized by bitsandbytes as \(format.kind.rawValue); the config asks for \(asked), which would re-quantize rounded weights. Remove that key (the stored \(format.kind.rawValue) base is used as is), or start from the unquantized model")
        }
    }
}

extension SafetensorsWeights {
    /// Projection `name` ([rows, cols] = `shape`) as the bnb checkpoint stores it.
    func bnbFrozenWeight(_ name: String, shape: [Int]) throws -> FrozenWeight {
        guard let stored = checkpoint.info(named: name) else {
            throw FormatError(path, "weight \(name) is missing; the checkpoint does not match its config")
        }
        let rows = shape[0], cols = shape[1]
        if let stateName = ["nf4", "fp4"].map({ name + ".quant_state.bitsandbytes__" + $0 }).first(where: contains) {
            let q = try read4bit(name, stateName: stateName, stored: stored, rows: rows, cols: cols)
            return FrozenWeight(storage: .bnb4(q), rows: rows, cols: cols)
        }
        let module = name.hasSuffix(".weight") ? String(name.dropLast(".weight".count)) : name
        if stored.dtype == .i8 {
            return FrozenWeight(storage: .int8(try readInt8(name, module: module, stored: stored, rows: rows, cols: cols)),
                                rows: rows, cols: cols)
        }
        if stored.dtype.isFloatingPoint && !contains(name + ".absmax") {
            // a module bitsandbytes skipped (llm_int8_skip_modules): float as stored
            return FrozenWeight(dense: try require(name, shape: shape))
        }
        throw FormatError(checkpoint.shard(for: name)?.path ?? path, "\(name) is \(stored.dtype) \(stored.shape) without \(name).quant_state.bitsandbytes__nf4 (or __fp4) nor \(module).SCB; the bitsandbytes checkpoint is incomplete — download it again")
    }

    private func file(_ name: String) -> String { checkpoint.shard(for: name)?.path ?? path }

    private func tensor(_ name: String, of weight: String, why: String) throws -> SafetensorsTensor {
        guard let t = checkpoint.tensor(named: name) else {
            throw FormatError(path, "\(name) is missing (\(why) of \(weight)); the bitsandbytes checkpoint is incomplete — download it again")
        }
        return t
    }

    /// f32 values of a small tensor (absmax, maps), any float dtype.
    private func floats(_ t: SafetensorsTensor, expecting count: Int, what: String) throws -> [Float] {
        guard t.dtype.isFloatingPoint, t.elementCount == count else {
            throw FormatError(file(t.name), "\(t.name) is \(t.dtype) \(t.shape); \(what) should be \(count) float values — the checkpoint is corrupt, download it again")
        }
        return t.floats()
    }

    /// A quant_state value as its JSON reads, for messages.
    private func shown(_ v: JSONValue?) -> String {
        switch v {
        case nil: return "nothing"
        case .int(let i)?: return String(i)
        case .double(let d)?: return String(d)
        case .string(let s)?: return "'\(s)'"
        case .array(let a)?: return "[" + a.map { shown($0) }.joined(separator: ", ") + "]"
        case let other?: return other.kind
        }
    }

    private func read4bit(_ name: String, stateName: String, stored: SafetensorsTensorInfo,
                          rows: Int, cols: Int) throws -> BnB4BitWeight {
        let stateTensor = try tensor(stateName, of: name, why: "the quant_state")
        let src = file(stateName)
        let state: JSONValue
        do {
            state = try JSONParser.parse(stateTensor.bytes)
        } catch {
            throw FormatError(src, "\(stateName) is not valid JSON (\(error)); the checkpoint is corrupt — download it again")
        }
        func field(_ key: String) throws -> JSONValue {
            guard let v = state[key] else {
                throw FormatError(src, "\(stateName) has no '\(key)'; the checkpoint is corrupt — download it again")
            }
            return v
        }
        let typeName = stateName.hasSuffix("nf4") ? "nf4" : "fp4"
        guard let type = BnB4BitType(rawValue: typeName), try field("quant_type").string == typeName else {
            throw FormatError(src, "\(stateName) says quant_type \(shown(state["quant_type"])), its name says \(typeName); the checkpoint is corrupt — download it again")
        }
        guard let blocksize = try field("blocksize").int, BnBCheckpointFormat.supportedBlocksizes.contains(blocksize) else {
            throw FormatError(src, "\(stateName) has blocksize \(shown(state["blocksize"])); Loft reads bitsandbytes blocks of \(BnBCheckpointFormat.supportedBlocksizes.map(String.init).joined(separator: ", ")) — re-quantize from the unquantized model (load_in_4bit)")
        }
        let shape = try field("shape").array?.compactMap(\.int)
        guard shape == [rows, cols] else {
            throw FormatError(src, "\(stateName) gives shape \(shown(state["shape"])), the config expects [\(rows), \(cols)]; the checkpoint does not match its config.json")
        }
        let n = rows * cols, blocks = (n + blocksize - 1) / blocksize
        guard stored.byteCount == (n + 1) / 2, let packedTensor = checkpoint.tensor(named: name) else {
            throw FormatError(file(name), "\(name) holds \(stored.byteCount) bytes; \(rows)×\(cols) 4-bit codes take \((n + 1) / 2) — the checkpoint is corrupt, download it again")
        }
        let table = try floats(try tensor(name + ".quant_map", of: name, why: "the 4-bit code table"), expecting: 16,
                               what: "the \(typeName) code table")
        guard table.map(\.bitPattern) == BnBQuantizer.table(type).map(\.bitPattern) else {
            throw FormatError(file(name + ".quant_map"), "\(name).quant_map is not bitsandbytes' \(typeName) table; Loft dequantizes with the standard table only — re-quantize from the unquantized model (load_in_4bit)")
        }
        let absmaxTensor = try tensor(name + ".absmax", of: name, why: "the block scales")
        let absmax: BnBAbsmax
        if contains(name + ".nested_absmax") || state["nested_offset"] != nil {
            guard absmaxTensor.dtype == .u8, absmaxTensor.elementCount == blocks else {
                throw FormatError(file(absmaxTensor.name), "\(absmaxTensor.name) is \(absmaxTensor.dtype) \(absmaxTensor.shape); double-quantized scales of \(blocks) blocks are \(blocks) uint8 codes — the checkpoint is corrupt, download it again")
            }
            guard try field("nested_blocksize").int == BnBQuantizer.nestedBlocksize else {
                throw FormatError(src, "\(stateName) has nested_blocksize \(shown(state["nested_blocksize"])); Loft reads double quantization in blocks of \(BnBQuantizer.nestedBlocksize) (bitsandbytes' only size) — re-quantize from the unquantized model")
            }
            guard let offset = try field("nested_offset").double else {
                throw FormatError(src, "\(stateName): nested_offset is not a number; the checkpoint is corrupt — download it again")
            }
            let nestedBlocks = (blocks + BnBQuantizer.nestedBlocksize - 1) / BnBQuantizer.nestedBlocksize
            let absmax2 = try floats(try tensor(name + ".nested_absmax", of: name, why: "the scales of the double-quantized absmax"),
                                     expecting: nestedBlocks, what: "the nested absmax")
            let map = try floats(try tensor(name + ".nested_quant_map", of: name, why: "the 8-bit map of the absmax"),
                                 expecting: 256, what: "the nested quant map")
            guard map.map(\.bitPattern) == BnBQuantizer.dynamicMap.map(\.bitPattern) else {
                throw FormatError(file(name + ".nested_quant_map"), "\(name).nested_quant_map is not bitsandbytes' 8-bit dynamic map; Loft decodes the absmax with that map only — re-quantize from the unquantized model (load_in_4bit)")
            }
            absmax = .double(codes: Array(absmaxTensor.bytes), absmax2: absmax2, offset: Float(offset))
        } else {
            absmax = .plain(try floats(absmaxTensor, expecting: blocks, what: "the absmax of \(blocks) blocks"))
        }
        return BnB4BitWeight(type: type, rows: rows, cols: cols, blocksize: blocksize,
                             packed: Array(packedTensor.bytes), absmax: absmax)
    }

    private func readInt8(_ name: String, module: String, stored: SafetensorsTensorInfo,
                          rows: Int, cols: Int) throws -> BnBInt8Weight {
        guard stored.shape == [rows, cols], let cb = checkpoint.tensor(named: name) else {
            throw FormatError(file(name), "\(name) has shape \(stored.shape), the config expects [\(rows), \(cols)]; the checkpoint does not match its config.json")
        }
        if let format = checkpoint.tensor(named: module + ".weight_format") {
            // 0 is bnb's row-major layout; the others are old GPU tile layouts
            let bytes = format.bytes
            guard bytes.count >= 1, bytes.allSatisfy({ $0 == 0 }) else {
                throw FormatError(file(format.name), "\(format.name) is not 0 (row-major); Loft reads int8 weights saved in bitsandbytes' row format — re-save the model with bitsandbytes ≥ 0.43, or use the unquantized model")
            }
        }
        let scbName = contains(module + ".SCB") ? module + ".SCB" : name + ".SCB"
        let scb = try floats(try tensor(scbName, of: name, why: "the row scales"), expecting: rows, what: "one scale per row")
        return BnBInt8Weight(rows: rows, cols: cols, cb: cb.bytes.map { Int8(bitPattern: $0) }, scb: scb)
    }
}
