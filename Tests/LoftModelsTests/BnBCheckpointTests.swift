import Foundation
import XCTest
import LoftTestSupport
import LoftFormats
import LoftTensors
@testable import LoftModels

/// Checkpoints saved by transformers from bitsandbytes-quantized models
/// (fixtures by tools/make_bnb_checkpoint_fixtures.py: the tiny Llama as nf4
/// with and without double quant, fp4, and LLM.int8), read as stored: the
/// dequantized projections bit-identical to bitsandbytes', the logits within
/// 1e-4 of transformers' quantized model in f32, merge writing float weights,
/// and a corrupt quant_state refused with the tensor named.
final class BnBCheckpointTests: XCTestCase {
    static let cases: [(name: String, kind: String)] = [("nf4_dq", "nf4+dq"), ("nf4", "nf4"), ("fp4", "fp4+dq"), ("int8", "int8")]

    func dir(_ name: String) -> String { TestPaths.fixtures.appendingPathComponent("bnb/\(name)").path }

    func reference(_ name: String) throws -> SafetensorsFile {
        try SafetensorsFile(path: dir(name) + "/reference.safetensors")
    }

    func linear(_ model: LlamaModel, _ name: String) -> Linear {
        // "model.layers.1.mlp.down_proj"
        let parts = name.split(separator: ".")
        let layer = model.layers[Int(parts[2])!]
        let path = parts[3...].joined(separator: ".")
        return layer.projections.first { $0.0 == path }!.1
    }

    func testDequantizedWeightsAreBitsandbytes() throws {
        for (name, kind) in Self.cases {
            let (model, _) = try ModelLoader.load(dir(name))
            let ref = try reference(name)
            var full = 0, fingerprints = 0
            for t in ref.tensors {
                if t.name.hasPrefix("dequant.") {
                    let module = String(t.name.dropFirst("dequant.".count))
                    let l = linear(model, module)
                    XCTAssertEqual(l.frozen.kindDescription, kind, "\(name) \(module)")
                    let want = try ref.floats(named: t.name)
                    let got = l.frozen.dequantized().toArray()
                    XCTAssertEqual(got.count, want.count)
                    let differing = zip(got, want).filter { $0.bitPattern != $1.bitPattern }.count
                    XCTAssertEqual(differing, 0, "\(name) \(module): \(differing) values differ from bitsandbytes' dequantization")
                    full += 1
                } else if t.name.hasPrefix("sum.") {
                    let module = String(t.name.dropFirst("sum.".count))
                    let tensor = try XCTUnwrap(ref.tensor(named: t.name))
                    let want = (0 ..< 2).map { tensor.bytes.load(fromByteOffset: 8 * $0, as: Double.self) }
                    let got = linear(model, module).frozen.dequantized().toArray()
                    var sum = 0.0, weighted = 0.0
                    for (i, v) in got.enumerated() { sum += Double(v); weighted += Double(v) * Double(i % 97 + 1) }
                    // the values are f32 and equal; only the order of the f64 sums differs
                    XCTAssertEqual(sum, want[0], accuracy: 1e-9 * max(1, abs(want[0])), "\(name) \(module)")
                    XCTAssertEqual(weighted, want[1], accuracy: 1e-9 * max(1, abs(want[1])), "\(name) \(module)")
                    fingerprints += 1
                }
            }
            XCTAssertEqual(full, 2, name)
            XCTAssertEqual(fingerprints, 14, name)
        }
    }

    func logits(_ model: LlamaModel, _ name: String) throws -> (got: [Float], want: [Float]) {
        let ref = try reference(name)
        let ids = try ref.require("input_ids")
        let tokens = (0 ..< ids.elementCount).map { ids.bytes.load(fromByteOffset: 4 * $0, as: Int32.self) }
        return (model.forward(ids: tokens).toArray(), try ref.floats(named: "logits"))
    }

    func testLogitsMatchTransformersQuantizedModel() throws {
        for (name, _) in Self.cases {
            let (model, _) = try ModelLoader.load(dir(name))
            let (got, want) = try logits(model, name)
            XCTAssertEqual(got.count, want.count)
            let err = zip(got, want).map { Double(abs($0 - $1)) / max(1, Double(abs($1))) }.max()!
            XCTAssertLessThanOrEqual(err, 1e-4, "\(name): logits off by \(err)")
        }
        // the same model unquantized is far from the nf4 reference, so the check can fail
        let (plain, _) = try ModelLoader.load(TestPaths.fixtures.appendingPathComponent("tiny/llama").path)
        let (got, want) = try logits(plain, "nf4_dq")
        XCTAssertGreaterThan(zip(got, want).map { abs($0 - $1) }.max()!, 1e-2)
    }

    func testStoredFormatWinsOverTheRequest() throws {
        let (model, _) = try ModelLoader.load(dir("nf4_dq"), baseWeights: BaseWeightFormat(kind: .nf4, doubleQuant: false))
        XCTAssertEqual(model.baseWeights, BaseWeightFormat(kind: .nf4, doubleQuant: true))
        let (bf16, _) = try ModelLoader.load(dir("int8"), baseWeights: BaseWeightFormat(kind: .bf16))
        XCTAssertEqual(bf16.baseWeights.kind, .int8)
        XCTAssertThrowsError(try ModelLoader.load(dir("nf4_dq"), baseWeights: BaseWeightFormat(kind: .int8))) { e in
            XCTAssertTrue("\(e)".contains("already quantized by bitsandbytes as nf4"), "\(e)")
            XCTAssertTrue("\(e)".contains("Remove that key"), "\(e)")
        }
        XCTAssertThrowsError(try ModelLoader.load(dir("nf4_dq"), baseWeights: BaseWeightFormat(kind: .fp4))) { e in
            XCTAssertTrue("\(e)".contains("bnb_4bit_quant_type: fp4"), "\(e)")
        }
    }

    /// merge of a bnb base without an adapter writes its dequantized weights
    /// as float, and a config transformers loads unquantized.
    func testMergeWritesFloatWeights() throws {
        let fm = FileManager.default
        let out = fm.temporaryDirectory.appendingPathComponent("loft-bnb-merged-\(UUID().uuidString)").path
        defer { try? fm.removeItem(atPath: out) }
        let report = try ModelMerger.merge(modelPath: dir("nf4_dq"), adapter: nil, to: out, options: .init(dtype: .fp32))
        XCTAssertTrue(report.notes.contains { $0.contains("stored by bitsandbytes as nf4 (double quant)") }, "\(report.notes)")
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/config.json"))) as! [String: Any]
        XCTAssertNil(config["quantization_config"])
        let merged = try SafetensorsCheckpoint(path: out)
        let name = "model.layers.1.mlp.down_proj"
        XCTAssertEqual(merged.info(named: name + ".weight")?.dtype, .f32)
        XCTAssertEqual(try merged.floats(named: name + ".weight").map(\.bitPattern),
                       try reference("nf4_dq").floats(named: "dequant." + name).map(\.bitPattern))
        let (model, _) = try ModelLoader.load(out)
        let (got, want) = try logits(model, "nf4_dq")
        XCTAssertLessThanOrEqual(zip(got, want).map { Double(abs($0 - $1)) / max(1, Double(abs($1))) }.max()!, 1e-4)
    }

    // MARK: - corrupt checkpoints

    /// A copy of the nf4_dq fixture with `edit` applied to its tensors.
    func corrupted(_ edit: (inout [String: (SafetensorsDType, [Int], [UInt8])]) -> Void) throws -> String {
        let fm = FileManager.default
        let out = fm.temporaryDirectory.appendingPathComponent("loft-bnb-bad-\(UUID().uuidString)").path
        try fm.createDirectory(atPath: out, withIntermediateDirectories: true)
        try fm.copyItem(atPath: dir("nf4_dq") + "/config.json", toPath: out + "/config.json")
        let file = try SafetensorsFile(path: dir("nf4_dq") + "/model.safetensors")
        var tensors: [String: (SafetensorsDType, [Int], [UInt8])] = [:]
        for info in file.tensors { tensors[info.name] = (info.dtype, info.shape, Array(file.tensor(named: info.name)!.bytes)) }
        edit(&tensors)
        var w = SafetensorsWriter(metadata: ["format": "pt"])
        for name in tensors.keys.sorted() { let t = tensors[name]!; try w.add(name: name, dtype: t.0, shape: t.1, bytes: t.2) }
        try w.write(to: out + "/model.safetensors")
        return out
    }

    func assertRefused(_ edit: (inout [String: (SafetensorsDType, [Int], [UInt8])]) -> Void, naming tensor: String,
                       saying words: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let path = try corrupted(edit)
        defer { try? FileManager.default.removeItem(atPath: path) }
        XCTAssertThrowsError(try ModelLoader.load(path), file: file, line: line) { e in
            let text = "\(e)"
            XCTAssertTrue(text.contains(tensor), "the error names \(tensor): \(text)", file: file, line: line)
            XCTAssertTrue(text.contains(words), "the error says '\(words)': \(text)", file: file, line: line)
        }
    }

    func state(_ json: String) -> (SafetensorsDType, [Int], [UInt8]) { (.u8, [json.utf8.count], Array(json.utf8)) }

    func testCorruptQuantStateIsRefusedByName() throws {
        let q = "model.layers.0.self_attn.q_proj.weight"
        let key = q + ".quant_state.bitsandbytes__nf4"
        try assertRefused({ $0[key] = state("{\"quant_type\": \"nf4\", \"blocksize\": 64, ") }, naming: key, saying: "is not valid JSON")
        try assertRefused({ $0[key] = state("{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"float32\", \"shape\": [64, 32], \"nested_blocksize\": 256, \"nested_offset\": 0.25}") },
                          naming: key, saying: "the config expects [64, 64]")
        try assertRefused({ $0[key] = state("{\"quant_type\": \"nf4\", \"blocksize\": 48, \"dtype\": \"float32\", \"shape\": [64, 64], \"nested_blocksize\": 256, \"nested_offset\": 0.25}") },
                          naming: key, saying: "blocksize 48")
        try assertRefused({ $0[key] = state("{\"quant_type\": \"fp4\", \"blocksize\": 64, \"shape\": [64, 64]}") },
                          naming: key, saying: "quant_type")
        try assertRefused({ $0[key] = state("{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"float32\", \"shape\": [64, 64], \"nested_blocksize\": 256}") },
                          naming: key, saying: "no 'nested_offset'")
        try assertRefused({ $0[q + ".nested_absmax"] = nil }, naming: q + ".nested_absmax", saying: "is missing")
        try assertRefused({ $0[q + ".quant_map"]!.2[0] ^= 1 }, naming: q + ".quant_map", saying: "not bitsandbytes' nf4 table")
        try assertRefused({ $0[q + ".nested_quant_map"]!.2[40] ^= 1 }, naming: q + ".nested_quant_map", saying: "dynamic map")
        try assertRefused({ $0[q]!.2.removeLast(); $0[q]!.1 = [2047, 1] }, naming: q, saying: "take 2048")
        try assertRefused({ $0[q + ".absmax"]!.2.removeLast(); $0[q + ".absmax"]!.1 = [63] }, naming: q + ".absmax", saying: "64 uint8 codes")
        try assertRefused({ $0[key] = nil }, naming: q, saying: "incomplete")
    }

    func testOtherQuantizationMethodsAreRefused() throws {
        let fm = FileManager.default
        let out = fm.temporaryDirectory.appendingPathComponent("loft-gptq-\(UUID().uuidString)").path
        defer { try? fm.removeItem(atPath: out) }
        try fm.createDirectory(atPath: out, withIntermediateDirectories: true)
        var config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir("nf4") + "/config.json"))) as! [String: Any]
        config["quantization_config"] = ["quant_method": "gptq", "bits": 4]
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: out + "/config.json"))
        try fm.copyItem(atPath: dir("nf4") + "/model.safetensors", toPath: out + "/model.safetensors")
        XCTAssertThrowsError(try ModelLoader.load(out)) { e in
            XCTAssertTrue("\(e)".contains("quant_method is 'gptq'"), "\(e)")
        }
    }
}
