import Foundation
import XCTest
import LoftTestSupport
import LoftFormats
@testable import LoftTensors
@testable import LoftModels

/// Every frozen-weight storage (f32, bf16, NF4/FP4 ± double quant, int8 rows,
/// GGUF blocks with and without the q/k row permutation) through Linear's
/// forward (y = x·Wᵀ + b) and backward-input (dx = dy·W), tiled, against a
/// float64 GEMM on the same weight dequantized whole. Fresh random inputs
/// each run (the seed is printed on failure). Tolerance: 2e-6 of Σ|x||w| per
/// output, the f32 summation error bound for these sizes.
final class FrozenWeightTests: XCTestCase {
    let backend = CPUBackend.shared

    func randomFloats(_ n: Int, _ rng: inout SeededRandom, scale: Double = 1) -> [Float] {
        rng.normals(n, scale: scale).map(Float.init)
    }

    /// GGML blocks of `type` with random quants and sane f16 scales.
    func randomBlocks(_ type: GGMLType, rows: Int, cols: Int, _ rng: inout SeededRandom) throws -> [UInt8] {
        if type == .q8_0 || type == .q4_0 {
            return try GGMLQuantizer.encode(randomFloats(rows * cols, &rng, scale: 0.1), rowLength: cols, as: type)
        }
        let (elements, size) = type.blockLayout
        var bytes = (0 ..< rows * cols / elements * size).map { _ in UInt8.random(in: 0 ... 255, using: &rng) }
        func half(_ v: Float, at o: Int) { let b = Float16(v).bitPattern; bytes[o] = UInt8(b & 0xFF); bytes[o + 1] = UInt8(b >> 8) }
        for blk in 0 ..< bytes.count / size {
            let o = blk * size
            switch type {
            case .q4_1: half(0.01, at: o); half(-0.05, at: o + 2)  // d, m
            case .q4_K: half(0.002, at: o); half(0.001, at: o + 2)  // d, dmin
            case .q6_K: half(0.003, at: o + 208)  // d at the end
            default: break
            }
        }
        return bytes
    }

    func storages(rows: Int, cols: Int, _ rng: inout SeededRandom) throws -> [(String, FrozenWeight)] {
        let w = randomFloats(rows * cols, &rng, scale: 0.1)
        let t = Tensor.cpu(w, shape: [rows, cols])
        var out: [(String, FrozenWeight)] = [("f32", FrozenWeight(dense: t))]
        for (name, kind, dq) in [("bf16", BaseWeightKind.bf16, false), ("nf4", .nf4, false), ("nf4+dq", .nf4, true),
                                 ("fp4", .fp4, false), ("fp4+dq", .fp4, true), ("int8", .int8, false)] {
            out.append((name, FrozenWeight.converting(t, to: BaseWeightFormat(kind: kind, doubleQuant: dq))))
        }
        for type in [GGMLType.q4_0, .q4_1, .q8_0, .q4_K, .q6_K] where cols % type.blockLayout.elements == 0 {
            let bytes = try randomBlocks(type, rows: rows, cols: cols, &rng)
            out.append((type.description, try FrozenWeight.ggml(type: type, bytes: bytes, rows: rows, cols: cols)))
            out.append((type.description + " permuted", try FrozenWeight.ggml(type: type, bytes: bytes, rows: rows, cols: cols, permuteHeads: 2)))
        }
        return out
    }

    func check(rows: Int, cols: Int, tokens: Int, tileRows: Int) throws {
        let seed = UInt64.random(in: 0 ... UInt64.max)
        var rng = SeededRandom(seed: seed)
        let saved = CPUBackend.frozenTileRows
        CPUBackend.frozenTileRows = tileRows
        defer { CPUBackend.frozenTileRows = saved }
        // The tiled GEMM under test, not the decoding kernels (QuantizedDecodingTests).
        let savedMode = QuantizedDecoding.mode
        QuantizedDecoding.mode = nil
        defer { QuantizedDecoding.mode = savedMode }
        for (name, frozen) in try storages(rows: rows, cols: cols, &rng) {
            let wd = frozen.dequantized().toArray().map(Double.init)
            XCTAssertEqual(wd.count, rows * cols)
            XCTAssert(wd.allSatisfy(\.isFinite), "\(name): non-finite weights")
            let x = randomFloats(tokens * cols, &rng), dy = randomFloats(tokens * rows, &rng)
            let bias = randomFloats(rows, &rng)
            let start = randomFloats(tokens * rows, &rng), dxStart = randomFloats(tokens * cols, &rng)
            let linear = Linear(frozen: frozen, bias: Tensor.cpu(bias, shape: [rows]))
            for accumulate in [false, true] {
                let y = Tensor.cpu(start, shape: [tokens, rows])
                linear.forward(Tensor.cpu(x, shape: [tokens, cols]), into: y, backend: backend, accumulate: accumulate)
                let dx = Tensor.cpu(dxStart, shape: [tokens, cols])
                linear.backward(Tensor.cpu(dy, shape: [tokens, rows]), saved: nil, dx: dx, accumulate: accumulate, backend: backend)
                let (yv, dxv) = (y.toArray(), dx.toArray())
                for n in 0 ..< tokens {
                    for m in 0 ..< rows {
                        var ref = Double(bias[m]) + (accumulate ? Double(start[n * rows + m]) : 0), mag = abs(ref)
                        for k in 0 ..< cols { ref += Double(x[n * cols + k]) * wd[m * cols + k]; mag += abs(Double(x[n * cols + k]) * wd[m * cols + k]) }
                        XCTAssertEqual(Double(yv[n * rows + m]), ref, accuracy: 2e-6 * mag + 1e-12,
                                       "seed \(seed): \(name) forward [\(n), \(m)] accumulate \(accumulate)")
                    }
                    for k in 0 ..< cols {
                        var ref = accumulate ? Double(dxStart[n * cols + k]) : 0, mag = abs(ref)
                        for m in 0 ..< rows { ref += Double(dy[n * rows + m]) * wd[m * cols + k]; mag += abs(Double(dy[n * rows + m]) * wd[m * cols + k]) }
                        XCTAssertEqual(Double(dxv[n * cols + k]), ref, accuracy: 2e-6 * mag + 1e-12,
                                       "seed \(seed): \(name) backward [\(n), \(k)] accumulate \(accumulate)")
                    }
                }
            }
        }
    }

    /// Several tiles with a partial last one, through the GEMM path.
    func testTiledGEMMMatchesFloat64() throws { try check(rows: 100, cols: 256, tokens: 7, tileRows: 32) }
    /// One token: the matrix-vector path, tile by tile.
    func testTiledGEMVMatchesFloat64() throws { try check(rows: 72, cols: 256, tokens: 1, tileRows: 40) }
    /// A row length that is not a multiple of the 64-element block (4-bit
    /// blocks then straddle rows) and one tile for the whole matrix.
    func testRowsStraddlingBlocks() throws { try check(rows: 12, cols: 96, tokens: 5, tileRows: 1000) }

    /// The real SmolLM2 GGUF kept in its Q4_1/Q8_0 blocks: every projection's
    /// rows equal the f32 loader's (dequantized, q/k permutation undone) bit for bit.
    func testGGUFBlocksEqualTheDequantizedLoad() throws {
        let opened = try ModelLoader.open(TestPaths.smolLM2)
        let c = opened.config
        for name in ["model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight",
                     "model.layers.3.self_attn.v_proj.weight", "model.layers.5.mlp.down_proj.weight"] {
            let dense = try XCTUnwrap(opened.weights.load(name))
            let kept = try opened.weights.frozenWeight(name, shape: dense.shape, format: BaseWeightFormat(kind: .gguf))
            XCTAssertNil(kept.dense, name)
            let a = dense.toArray(), b = kept.dequantized().toArray()
            XCTAssertEqual(a.count, b.count)
            XCTAssert(zip(a, b).allSatisfy { $0.bitPattern == $1.bitPattern }, "\(name) differs")
        }
        _ = c
    }

    /// Inference's f32 copies of a compact base hold the values the tiled
    /// GEMMs multiply by: the logits keep their numbers (to sgemm's summation
    /// order), every projection becomes dense, and a limit below their size
    /// leaves the base compact.
    func testDequantizedFrozenWeightsKeepTheLogits() throws {
        let tiny = TestPaths.repoRoot.appendingPathComponent("Tests/LoftModelsTests/Fixtures/tiny/llama").path
        let ids: [Int32] = [3, 17, 101, 5, 250, 42, 9]
        for format in [BaseWeightFormat(kind: .nf4, doubleQuant: true), BaseWeightFormat(kind: .int8), BaseWeightFormat(kind: .bf16)] {
            let (model, _) = try ModelLoader.load(tiny, baseWeights: format)
            let before = model.forward(ids: ids).toArray()   // forward returns the logits
            XCTAssertEqual(model.dequantizeFrozenWeights(limitBytes: 1000), 0, "over the limit: kept compact")
            XCTAssertNil(model.layers[0].q.frozen.dense)
            let added = model.dequantizeFrozenWeights(limitBytes: 1 << 30)
            XCTAssertEqual(added, 2 * 4 * (4 * 64 * 64 / 2 + 2 * 64 * 32 + 3 * 64 * 96), "\(format.summary)")
            XCTAssert(model.layers.allSatisfy { $0.projections.allSatisfy { $0.1.frozen.dense != nil } })
            let after = model.forward(ids: ids).toArray()
            let scale = Double(before.map { abs($0) }.max()!)
            let err = Double(zip(before, after).map { abs($0 - $1) }.max()!)
            XCTAssertLessThanOrEqual(err, 1e-5 * scale, "\(format.summary): max |Δ| \(err)")
            XCTAssertEqual(model.dequantizeFrozenWeights(limitBytes: 1 << 30), 0, "nothing left to dequantize")
        }
    }

    /// The f32 copies kept beside a GGUF base's blocks for prompt rows
    /// (`keepPromptCopies`): a limit below their size keeps nothing; above
    /// it every projection gets its dequantized values bit for bit, prompt
    /// rows (more than the kernels' 16) keep their logits to sgemm's
    /// summation order, and a few rows still go through the block kernels,
    /// bit for bit as before.
    func testPromptCopiesKeepTheLogitsAndDecodeOnBlocks() throws {
        let (model, _) = try ModelLoader.load(TestPaths.smolLM2, baseWeights: BaseWeightFormat(kind: .gguf))
        let prompt: [Int32] = (0 ..< 24).map { Int32(100 + 37 * $0) }, few: [Int32] = [1, 2, 3]
        // forward returns the logits of every row
        let (promptBefore, fewBefore) = (model.forward(ids: prompt).toArray(), model.forward(ids: few).toArray())
        XCTAssertEqual(model.keepPromptCopies(limitBytes: 1 << 20), 0, "over the limit: nothing kept")
        XCTAssertNil(model.layers[0].q.frozen.promptCopy)
        let projections = model.layers.flatMap { $0.projections.map(\.1.frozen) }
        let added = model.keepPromptCopies(limitBytes: 1 << 31)
        XCTAssertEqual(added, projections.reduce(0) { $0 + $1.rows * $1.cols * 4 })
        for w in [model.layers[0].q.frozen, model.layers[7].down!.frozen] {
            let (copy, values) = (try XCTUnwrap(w.promptCopy).toArray(), w.dequantized().toArray())
            XCTAssert(zip(copy, values).allSatisfy { $0.bitPattern == $1.bitPattern })
        }
        let promptAfter = model.forward(ids: prompt).toArray()
        let scale = Double(promptBefore.map { abs($0) }.max()!)
        let err = Double(zip(promptBefore, promptAfter).map { abs($0 - $1) }.max()!)
        XCTAssertLessThanOrEqual(err, 1e-5 * scale, "max |Δ| \(err)")
        let before = QuantizedDecoding.multiplications
        let fewAfter = model.forward(ids: few).toArray()
        XCTAssertGreaterThan(QuantizedDecoding.multiplications, before, "few rows still take the block kernels")
        XCTAssertEqual(fewAfter.map(\.bitPattern), fewBefore.map(\.bitPattern))
    }
}
