import Foundation
import XCTest
import LoftFormats
import LoftModels
import LoftTensors
import LoftTestSupport
@testable import LoftTraining

/// 8-bit AdamW (bitsandbytes' AdamW8bit, transformers' `adamw_8bit`) against
/// bitsandbytes 0.50.2 itself (its CPU kernels, fixture from
/// tools/make_adamw8bit_fixtures.py) and against a float64 reimplementation
/// of the published algorithm on fresh random inputs.
final class AdamW8bitTests: XCTestCase {
    var reference: SafetensorsFile!

    override func setUpWithError() throws {
        reference = try SafetensorsFile(path: TestPaths.fixtures.appendingPathComponent("adamw_8bit/reference.safetensors").path)
    }

    func floats(_ name: String) throws -> [Float] { try reference.require(name).floats() }
    func bytes(_ name: String) throws -> [UInt8] {
        let t = try reference.require(name)
        XCTAssertEqual(t.dtype, .u8)
        return [UInt8](t.bytes)
    }

    /// The nearest map entry by brute force in float64 (ties: the lower index).
    static func nearest(_ x: Double, _ map: [Float]) -> Int {
        var best = 0
        for i in 1 ..< map.count where abs(Double(map[i]) - x) < abs(Double(map[best]) - x) { best = i }
        return best
    }

    func testDynamicMapsAreBitsandbytesMaps() throws {
        XCTAssertEqual(DynamicQuantizationMap.signed, try floats("map_signed"))
        XCTAssertEqual(DynamicQuantizationMap.signed, try floats("map_signed_fresh"))
        XCTAssertEqual(DynamicQuantizationMap.unsigned, try floats("map_unsigned"))
    }

    func testBlockwiseQuantizationAgainstBitsandbytes() throws {
        let x = try floats("blockwise.x")
        for (kind, values, map) in [("signed", x, DynamicQuantizationMap.signed),
                                    ("unsigned", x.map { $0 * $0 }, DynamicQuantizationMap.unsigned)] {
            var codes = [UInt8](repeating: 0, count: values.count)
            var absmax = [Float](repeating: 0, count: BlockwiseQuantization.blockCount(values.count))
            BlockwiseQuantization.quantize(values, count: values.count, map: map, codes: &codes, absmax: &absmax)
            XCTAssertEqual(absmax, try floats("blockwise.\(kind).absmax"), "\(kind): absmax per block of 256")
            // Ours is the exact nearest entry (float64 brute force).
            for i in values.indices {
                let normalized = Double(values[i] / absmax[i / 256])
                XCTAssertEqual(Int(codes[i]), Self.nearest(normalized, map), "\(kind)[\(i)] = \(values[i])")
            }
            // bitsandbytes' CPU table search picks a neighbour for ~1–3% of values,
            // and below ~1e-4·absmax its table is coarser than the map (it rounds
            // anything under ~2e-5 to one small code, and may land two codes off).
            let theirs = try bytes("blockwise.\(kind).codes")
            var differing = 0
            for i in values.indices where codes[i] != theirs[i] {
                differing += 1
                let (a, b) = (map[Int(codes[i])], map[Int(theirs[i])])
                XCTAssertTrue(abs(Int(codes[i]) - Int(theirs[i])) == 1 || max(abs(a), abs(b)) <= 1e-4,
                              "\(kind)[\(i)]: code \(codes[i]) vs bitsandbytes' \(theirs[i])")
            }
            XCTAssertLessThan(Double(differing) / Double(values.count), 0.05, "\(kind): \(differing) codes differ")
            // Dequantization of bitsandbytes' own codes is bit-identical.
            var out = [Float](repeating: 0, count: values.count)
            BlockwiseQuantization.dequantize(theirs, count: values.count, map: map, absmax: absmax, into: &out)
            XCTAssertEqual(out, try floats("blockwise.\(kind).dequant"), "\(kind): dequantize")
        }
    }

    func testQuantizationOfFreshRandomValuesIsNearest() {
        let seed = UInt64.random(in: 0 ... UInt64.max)
        var rng = SeededRandom(seed: seed)
        let n = 777
        let values = rng.normals(n, scale: 0.01).map { Float($0) }
        for map in [DynamicQuantizationMap.signed, DynamicQuantizationMap.unsigned] {
            let input = map[0] < 0 ? values : values.map { $0 * $0 }
            var codes = [UInt8](repeating: 0, count: n)
            var absmax = [Float](repeating: 0, count: BlockwiseQuantization.blockCount(n))
            BlockwiseQuantization.quantize(input, count: n, map: map, codes: &codes, absmax: &absmax)
            for i in 0 ..< n {
                let block = i / 256
                let expectedAbsmax = input[block * 256 ..< min(n, block * 256 + 256)].map { abs($0) }.max()!
                XCTAssertEqual(absmax[block], expectedAbsmax, "seed \(seed)")
                XCTAssertEqual(Int(codes[i]), Self.nearest(Double(input[i] / expectedAbsmax), map), "seed \(seed), element \(i)")
            }
        }
    }

    /// Three steps of our kernel from bitsandbytes' starting point with its
    /// gradients: the parameters agree to within what its approximate code
    /// search can move them (a neighbouring code changes one moment by about
    /// one map step, ~1–6%, so one update by that much of lr).
    func testThreeStepsAgainstBitsandbytesAdamW8bit() throws {
        let meta = reference.metadata
        let lr = Float(meta["lr"]!)!, wd = Float(meta["weight_decay"]!)!
        let param = Tensor.cpu(try floats("adam.param0"), shape: [1100])
        let m = BlockwiseQuantizedVector(count: 1100, map: DynamicQuantizationMap.signed)
        let v = BlockwiseQuantizedVector(count: 1100, map: DynamicQuantizationMap.unsigned)
        for step in 1 ... 3 {
            let grad = Tensor.cpu(try floats("adam.grad\(step)"), shape: [1100])
            CPUBackend.shared.adamW8bit(param: param, grad: grad, m: m, v: v,
                                        hyper: AdamWHyper(lr: lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: wd, step: step))
            let expected = try floats("adam.param\(step)")
            let ours = param.toArray()
            var worst: Float = 0, agreeing = 0
            for i in ours.indices {
                let d = abs(ours[i] - expected[i])
                worst = max(worst, d)
                if d <= 1e-6 * max(1, abs(expected[i])) { agreeing += 1 }
            }
            XCTAssertLessThan(worst, 0.1 * lr * Float(step), "step \(step): worst parameter difference \(worst)")
            XCTAssertGreaterThan(Double(agreeing) / 1100, 0.9, "step \(step): \(agreeing)/1100 parameters agree to 1e-6")
            // The moments, dequantized, agree to about one map step.
            for (name, ours, map) in [("1", m, DynamicQuantizationMap.signed), ("2", v, DynamicQuantizationMap.unsigned)] {
                var theirs = [Float](repeating: 0, count: 1100)
                let absmax = try floats("adam.absmax\(name)_\(step)")
                BlockwiseQuantization.dequantize(try bytes("adam.state\(name)_\(step)"), count: 1100, map: map,
                                                 absmax: absmax, into: &theirs)
                let mine = ours.dequantized()
                let ourAbsmax = ours.absmax.toArray()
                for b in absmax.indices {
                    XCTAssertEqual(ourAbsmax[b], absmax[b], accuracy: 0.02 * absmax[b], "state\(name) step \(step) block \(b) absmax")
                }
                // A neighbouring code: the local gap of the map (wide near zero, where
                // bitsandbytes' search also lumps everything below ~2e-5 together).
                let theirCodes = try bytes("adam.state\(name)_\(step)")
                for i in 0 ..< 1100 {
                    let c = Int(theirCodes[i])
                    let gap = max(c < 255 ? map[c + 1] - map[c] : 0, c > 0 ? map[c] - map[c - 1] : 0)
                    XCTAssertEqual(mine[i], theirs[i], accuracy: (1.05 * gap + 2.2e-5) * absmax[i / 256] + 0.02 * abs(theirs[i]),
                                   "state\(name) step \(step) [\(i)]")
                }
            }
        }
    }

    /// The published algorithm in float64: dequantize, AdamW update, requantize
    /// with a fresh per-block absmax and exact nearest rounding.
    func testAgainstFloat64ReferenceOnFreshInputs() {
        let seed = UInt64.random(in: 0 ... UInt64.max)
        var rng = SeededRandom(seed: seed)
        let n = 600  // two full blocks and a partial one
        // The kernel takes f32 hyper-parameters: the reference uses the same values.
        let (lr, b1, b2, eps, wd) = (Double(Float(2e-3)), Double(Float(0.9)), Double(Float(0.999)), Double(Float(1e-8)),
                                     Double(Float(0.05)))
        var p64 = rng.normals(n, scale: 0.2)
        let param = Tensor.cpu(p64.map { Float($0) }, shape: [n])
        p64 = param.toArray().map(Double.init)
        let m = BlockwiseQuantizedVector(count: n, map: DynamicQuantizationMap.signed)
        let v = BlockwiseQuantizedVector(count: n, map: DynamicQuantizationMap.unsigned)
        var (mCodes, vCodes) = ([Int](repeating: 0, count: n), [Int](repeating: 0, count: n))
        var (mAbs, vAbs) = ([Double](repeating: 0, count: 3), [Double](repeating: 0, count: 3))
        let (sMap, uMap) = (DynamicQuantizationMap.signed, DynamicQuantizationMap.unsigned)
        for step in 1 ... 4 {
            let g = rng.normals(n, scale: 0.01 * Double(step)).map { Float($0) }
            CPUBackend.shared.adamW8bit(param: param, grad: Tensor.cpu(g, shape: [n]), m: m, v: v,
                                        hyper: AdamWHyper(lr: Float(lr), beta1: Float(b1), beta2: Float(b2), eps: Float(eps),
                                                          weightDecay: Float(wd), step: step))
            var mNew = [Double](repeating: 0, count: n), vNew = mNew
            let bc1 = 1 - pow(b1, Double(step)), bc2 = (1 - pow(b2, Double(step))).squareRoot()
            for i in 0 ..< n {
                let gi = Double(g[i])
                mNew[i] = b1 * Double(sMap[mCodes[i]]) * mAbs[i / 256] + (1 - b1) * gi
                vNew[i] = b2 * Double(uMap[vCodes[i]]) * vAbs[i / 256] + (1 - b2) * gi * gi
                p64[i] *= 1 - lr * wd
                p64[i] -= lr / bc1 * mNew[i] / (vNew[i].squareRoot() / bc2 + eps)
            }
            for b in 0 ..< 3 {
                let range = b * 256 ..< min(n, b * 256 + 256)
                mAbs[b] = range.map { abs(mNew[$0]) }.max()!
                vAbs[b] = range.map { abs(vNew[$0]) }.max()!
                for i in range {
                    mCodes[i] = Self.nearest(mNew[i] / mAbs[b], sMap)
                    vCodes[i] = Self.nearest(vNew[i] / vAbs[b], uMap)
                }
            }
            let ours = param.toArray()
            for i in 0 ..< n {
                XCTAssertEqual(Double(ours[i]), p64[i], accuracy: 1e-6 + 1e-6 * abs(p64[i]), "seed \(seed) step \(step) param[\(i)]")
            }
            // f32 vs f64 may round a value sitting on a code midpoint differently; nothing else may differ.
            let (mOurs, vOurs) = (m.codeBytes, v.codeBytes)
            var differing = 0
            for i in 0 ..< n where Int(mOurs[i]) != mCodes[i] || Int(vOurs[i]) != vCodes[i] {
                differing += 1
                mCodes[i] = Int(mOurs[i]); vCodes[i] = Int(vOurs[i])  // follow ours so later steps compare like with like
            }
            XCTAssertLessThanOrEqual(differing, 2, "seed \(seed) step \(step): \(differing) codes differ from the float64 reference")
            let (ma, va) = (m.absmax.toArray(), v.absmax.toArray())
            for b in 0 ..< 3 {
                XCTAssertEqual(Double(ma[b]), mAbs[b], accuracy: 1e-6 * mAbs[b], "seed \(seed) m absmax \(b)")
                XCTAssertEqual(Double(va[b]), vAbs[b], accuracy: 1e-6 * vAbs[b], "seed \(seed) v absmax \(b)")
                mAbs[b] = Double(ma[b]); vAbs[b] = Double(va[b])
            }
        }
    }

    /// Tensors of at least 4096 elements get 8-bit moments, smaller ones f32
    /// (bitsandbytes' min_8bit_size); a checkpoint restores the quantized
    /// state byte for byte, and refuses to load into an f32 optimizer.
    func testOptimizerStorageAndCheckpointRoundTrip() throws {
        let (model, _) = try ModelLoader.load(TestPaths.repoRoot.appendingPathComponent("Tests/LoftModelsTests/Fixtures/tiny/llama").path)
        let c = model.config
        _ = try model.attachLoRA(LoRAConfig(rank: 64, alpha: 64, targetModules: ["q_proj", "v_proj"]), seed: 1)
        let optimizer = AdapterOptimizer(model: model, momentStorage: .blockwise8bit)
        for p in optimizer.parameters {
            XCTAssertEqual(p.quantizedMoments != nil, p.value.count >= 4096, "\(p.name) has \(p.value.count) elements")
        }
        XCTAssertTrue(optimizer.parameters.contains { $0.quantizedMoments != nil }, "hidden \(c.hiddenSize): some tensor must be 8-bit")
        let ids: [Int32] = (0 ..< 24).map { Int32(($0 * 31 + 7) % c.vocabSize) }
        let mb = MicroBatch(ids: ids, labels: ids)
        let step = TrainingStep(model: model)
        for _ in 0 ..< 2 {
            _ = step.accumulate(mb, gradScale: 1 / Float(mb.targetCount))
            optimizer.update(lr: 1e-2, maxGradNorm: 1)
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("loft-8bit-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var state = TrainerState()
        state.step = 2
        let saved = try Checkpoint.save(model: model, optimizer: optimizer, state: state, lora: LoRAConfig(rank: 64, alpha: 64),
                                        baseModel: "tiny", outputDir: dir)
        let fresh = AdapterOptimizer(model: model, momentStorage: .blockwise8bit)
        _ = try Checkpoint.restore(saved, model: model, optimizer: fresh)
        for (a, b) in zip(optimizer.parameters, fresh.parameters) {
            if let qa = a.quantizedMoments, let qb = b.quantizedMoments {
                for (x, y) in [(qa.m, qb.m), (qa.v, qb.v)] {
                    XCTAssertEqual(Array(UnsafeBufferPointer(start: x.codeBytes, count: x.count)),
                                   Array(UnsafeBufferPointer(start: y.codeBytes, count: y.count)), a.name)
                    XCTAssertEqual(x.absmax.toArray(), y.absmax.toArray(), a.name)
                }
            } else {
                XCTAssertEqual(a.moment1.toArray(), b.moment1.toArray(), a.name)
                XCTAssertEqual(a.moment2.toArray(), b.moment2.toArray(), a.name)
            }
        }
        XCTAssertEqual(fresh.step, 2)
        XCTAssertThrowsError(try Checkpoint.restore(saved, model: model, optimizer: AdapterOptimizer(model: model))) { error in
            XCTAssertTrue("\(error)".contains("adamw_8bit"), "\(error)")
        }
    }

    func testConfigAcceptsTheEightBitOptimizers() throws {
        for name in ["adamw_8bit", "paged_adamw_8bit", "adamw_bnb_8bit"] {
            var problems: [String] = []
            let c = try TrainConfig.parse(["base_model": "m", "datasets": [["path": "d.jsonl"]], "optimizer": name],
                                          source: "t.yaml", problems: &problems)
            XCTAssertEqual(problems, [])
            XCTAssertEqual(c.optimizer, "adamw_8bit")
        }
        var problems: [String] = []
        _ = try TrainConfig.parse(["base_model": "m", "datasets": [["path": "d.jsonl"]], "optimizer": "lion_8bit"],
                                  source: "t.yaml", problems: &problems)
        XCTAssertTrue(problems.contains { $0.contains("adamw_8bit") }, "\(problems)")
    }
}
