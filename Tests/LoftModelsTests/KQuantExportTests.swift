import Foundation
import XCTest
import LoftFormats
@testable import LoftModels

/// `loft export gguf --quant q4_k_m|q5_k_m|q6_k`: the tensor types llama.cpp's
/// llama_model_quantize picks (fixture: tools/check_llamacpp_export.py
/// --write-fixture ran it on Loft's f32 export of SmolLM2, where hidden 576 is
/// not a multiple of 256 and most tensors take the fallback types), and what
/// Loft writes with them.
final class KQuantExportTests: XCTestCase {
    func testTensorTypesMatchLlamaModelQuantize() throws {
        let fixture = try JSONSerialization.jsonObject(with: Data(contentsOf: TestPaths.fixtures.appendingPathComponent("llamacpp_quant_types.json"))) as! [String: Any]
        let files = fixture["files"] as! [String: [String: [String: Any]]]
        XCTAssertEqual(Set(files.keys), ["q4_k_m", "q5_k_m", "q6_k"])
        for (name, tensors) in files {
            let ft = try XCTUnwrap(GGUFFileType(rawValue: name))
            let tied = tensors["output.weight"] == nil
            let layers = tensors.keys.compactMap { GGUFFileType.layerIndex($0) }.max()! + 1
            var seen = Set<String>()
            for (tensor, info) in tensors {
                let shape = info["shape"] as! [Int]  // ggml order: ne0 (the row length) first
                let want = info["type"] as! String
                let got = ft.tensorType(name: tensor, dimensions: shape.count, rowLength: shape[0], layers: layers, tiedEmbeddings: tied)
                XCTAssertEqual(got.type.description, want, "\(name) \(tensor)")
                seen.insert(want)
            }
            // The fixture exercises the K-quants and their fallbacks, not only one type.
            if name == "q4_k_m" { XCTAssertEqual(seen, ["F32", "Q8_0", "Q5_0", "Q4_K", "Q6_K"]) }
        }
    }

    /// The mix on shapes that are whole super-blocks: llama.cpp's Q4_K_M rule
    /// (use_more_bits layers of attn_v / ffn_down in Q6_K, output in Q6_K).
    func testMixOnSuperBlockShapes() {
        let ft = GGUFFileType.q4_K_M
        func t(_ n: String, _ row: Int = 4096, tied: Bool = false) -> GGMLType {
            ft.tensorType(name: n, dimensions: 2, rowLength: row, layers: 32, tiedEmbeddings: tied).type
        }
        XCTAssertEqual(t("output.weight"), .q6_K)
        XCTAssertEqual(t("token_embd.weight"), .q4_K)
        XCTAssertEqual(t("token_embd.weight", tied: true), .q6_K)
        // 32 layers: more bits for i < 4, i ≥ 28, and (i − 4) % 3 == 2.
        let more = (0 ..< 32).filter { GGUFFileType.useMoreBits($0, 32) }
        XCTAssertEqual(more, [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31])
        for i in 0 ..< 32 {
            XCTAssertEqual(t("blk.\(i).attn_v.weight"), more.contains(i) ? .q6_K : .q4_K)
            XCTAssertEqual(t("blk.\(i).ffn_down.weight", 11008), more.contains(i) ? .q6_K : .q4_K)
            XCTAssertEqual(t("blk.\(i).attn_q.weight"), .q4_K)
        }
        XCTAssertEqual(GGUFFileType.q6_K.tensorType(name: "blk.0.ffn_up.weight", dimensions: 2, rowLength: 4096, layers: 32, tiedEmbeddings: false).type, .q6_K)
        XCTAssertEqual(GGUFFileType.q5_K_M.tensorType(name: "blk.5.ffn_up.weight", dimensions: 2, rowLength: 576, layers: 32, tiedEmbeddings: false).type, .q5_1)
        XCTAssertEqual(ft.tensorType(name: "blk.0.attn_norm.weight", dimensions: 1, rowLength: 4096, layers: 32, tiedEmbeddings: false).type, .f32)
        XCTAssertEqual(ft.tensorType(name: "blk.0.ffn_up.weight", dimensions: 2, rowLength: 100, layers: 32, tiedEmbeddings: false).type, .f16, "no block type fits")
        XCTAssertEqual(ft.llamaFileType, 15)
        XCTAssertEqual(GGUFFileType.q5_K_M.llamaFileType, 17)
        XCTAssertEqual(GGUFFileType.q6_K.llamaFileType, 18)
    }

    /// Each written tensor holds exactly GGMLQuantizer's bytes of the merged
    /// weights (whose bytes equal ggml's, KQuantTests), the file type is
    /// llama.cpp's, and Loft reads the file back as a working model.
    func testQ4KMExportWritesTheMixAndReadsBack() throws {
        let base = TestPaths.fixtures.appendingPathComponent("tiny/llama").path
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("loft-kq-\(UUID().uuidString).gguf").path
        addTeardownBlock { try? FileManager.default.removeItem(atPath: out) }
        let report = try GGUFExporter.export(modelPath: base, adapter: nil, to: out, type: .q4_K_M)
        let file = try GGUFFile(path: out)
        XCTAssertEqual(file.metadata["general.file_type"]?.int, 15)
        XCTAssertEqual(file.metadata["general.quantization_version"]?.int, 2)
        // tiny: hidden 64, FFN 96 — no row is a whole super-block, so everything falls back.
        XCTAssertEqual(file.tensor(named: "blk.0.ffn_up.weight")?.type, .q5_0)
        XCTAssertEqual(file.tensor(named: "blk.0.ffn_down.weight")?.type, .q5_0)
        XCTAssertEqual(file.tensor(named: "blk.1.ffn_down.weight")?.type, .q8_0, "use_more_bits(1, 2): Q6_K, whose fallback is Q8_0")
        XCTAssertEqual(file.tensor(named: "output.weight")?.type, .q8_0)
        XCTAssertFalse(report.notes.isEmpty, "the fallbacks are reported")
        let (m, _) = try ModelLoader.load(out)
        let (ref, _) = try ModelLoader.load(base)
        let ids: [Int32] = [1, 17, 42, 99, 5, 63, 120, 7]
        let got = m.forward(ids: ids).toArray(), want = ref.forward(ids: ids).toArray()
        let rel = zip(got, want).map { abs($0 - $1) }.max()! / want.map { abs($0) }.max()!
        XCTAssertLessThan(rel, 0.2)
        XCTAssertGreaterThan(rel, 0, "quantized logits differ from f32")
    }
}
