import Foundation
import LoftFormats
import LoftInference
import LoftModels
import LoftTensors
import LoftTestSupport
import LoftTokenizers
import XCTest

/// Decoding on GGUF blocks (`QuantizedDecoding`, Sources/CLoftQuant) against
/// a float64 reference: x · dequant(W)ᵀ with W dequantized by Loft's own
/// GGMLDequantizer (bit-exact with gguf-py), fresh random blocks and inputs.
///
/// Tolerances, per output y[j, r]:
/// - int8 (x rounded to 8 bits per block of 32, or 256 for the K-quants,
///   scale d = absmax/127): |Δ| ≤ Σ_blocks (d/2) · Σ_block |w| — the whole
///   error of rounding x, which is the format's own activation tolerance —
///   plus 2e-5 · Σ|w·x| for f32 accumulation.
/// - f32 (weights expanded on the fly, x as it is): |Δ| ≤ 1e-5 · Σ|w·x|.
final class QuantizedDecodingTests: XCTestCase {
    static let types: [GGMLType] = [.q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q4_K, .q5_K, .q6_K]

    static func randomBlocks(_ t: GGMLType, rows: Int, cols: Int, rng: inout SeededRandom) -> [UInt8] {
        QuantizedDecoding.sampleBlocks(t, rows: rows, cols: cols, using: &rng)
    }

    struct Case { let type: GGMLType; let rows: Int; let cols: Int; let n: Int }

    static func cases() -> [Case] {
        var c: [Case] = []
        for t in types {
            let colsList = t.blockLayout.elements == 256 ? [256, 1536] : [32, 576, 1536]
            for cols in colsList {
                for n in [1, 2, 3, 5, 16, 32] { c.append(Case(type: t, rows: 37, cols: cols, n: n)) }
            }
        }
        return c
    }

    /// Runs every case through `QuantizedDecoding.multiply` and checks each output against its bound.
    func check(mode: QuantizedDecoding.Mode, scalar: Bool) throws {
        var seeder = SystemRandomNumberGenerator()
        let seed = UInt64.random(in: 0 ... .max, using: &seeder)
        var rng = SeededRandom(seed: seed)
        QuantizedDecoding.forceScalar(scalar)
        defer { QuantizedDecoding.forceScalar(false) }
        for c in Self.cases() {
            let blocks = Self.randomBlocks(c.type, rows: c.rows, cols: c.cols, rng: &rng)
            let w = try FrozenWeight.ggml(type: c.type, bytes: blocks, rows: c.rows, cols: c.cols)
            let wf = w.dequantized().toArray()
            let x = (0 ..< c.n * c.cols).map { _ in Float(rng.normal()) }
            var y = [Float](repeating: .nan, count: c.n * c.rows)
            let gb = try XCTUnwrap(w.ggmlBlocks)
            x.withUnsafeBufferPointer { xp in
                y.withUnsafeMutableBufferPointer { yp in
                    QuantizedDecoding.multiply(xp.baseAddress!, rows: c.n, cols: c.cols, blocks: gb, outputs: c.rows,
                                               into: yp.baseAddress!, accumulate: false, mode: mode)
                }
            }
            let actBlock = c.type.blockLayout.elements == 256 ? 256 : 32
            var worst = 0.0
            for j in 0 ..< c.n {
                for r in 0 ..< c.rows {
                    var ref = 0.0, mag = 0.0, rounding = 0.0
                    for b in 0 ..< c.cols / actBlock {
                        let range = b * actBlock ..< (b + 1) * actBlock
                        let amax = range.map { Double(abs(x[j * c.cols + $0])) }.max()!
                        var wabs = 0.0
                        for i in range {
                            let p = Double(wf[r * c.cols + i]) * Double(x[j * c.cols + i])
                            ref += p
                            mag += abs(p)
                            wabs += abs(Double(wf[r * c.cols + i]))
                        }
                        rounding += amax / 127 / 2 * wabs
                    }
                    let bound = mode == .int8 ? rounding * (1 + 1e-5) + 2e-5 * mag : 1e-5 * mag
                    let err = abs(Double(y[j * c.rows + r]) - ref)
                    worst = max(worst, err / max(bound, .leastNormalMagnitude))
                    if !(err <= bound) {
                        XCTFail("\(c.type) \(c.rows)x\(c.cols), \(c.n) rows, \(mode) \(scalar ? "scalar" : QuantizedDecoding.isa): y[\(j), \(r)] = \(y[j * c.rows + r]), float64 \(ref), |Δ| \(err) > bound \(bound) (seed \(seed))")
                        return
                    }
                }
            }
            XCTAssertGreaterThan(worst, 0, "\(c.type): an exact result means the rounding under test never happened")
        }
    }

    func testInt8KernelsWithinActivationRounding() throws { try check(mode: .int8, scalar: false) }
    func testInt8ScalarKernelsWithinActivationRounding() throws { try check(mode: .int8, scalar: true) }
    func testFloatKernelsMatchFloat64() throws { try check(mode: .f32, scalar: false) }
    func testFloatScalarKernelsMatchFloat64() throws { try check(mode: .f32, scalar: true) }

    /// The CPU backend's linear layer takes the kernels for a few rows of a
    /// GGUF weight (q/k permutation undone, bias added, accumulating) and the
    /// tiled GEMM beyond `maxRows`; both agree with float64.
    func testLinearRoutesFewRowsToTheKernels() throws {
        var rng = SeededRandom(seed: UInt64.random(in: 0 ... .max))
        let (rows, cols, heads) = (36, 576, 3)
        for type in Self.types where type.blockLayout.elements == 32 || cols % 256 == 0 {
            let w = try FrozenWeight.ggml(type: type, bytes: Self.randomBlocks(type, rows: rows, cols: cols, rng: &rng),
                                          rows: rows, cols: cols, permuteHeads: heads)
            XCTAssertTrue(w.decodesInPlace)
            let wf = w.dequantized().toArray()
            let bias = (0 ..< rows).map { _ in Float(rng.normal()) }
            for n in [1, 4, QuantizedDecoding.maxRows, QuantizedDecoding.maxRows + 3] {
                let x = (0 ..< n * cols).map { _ in Float(rng.normal()) }
                let start = (0 ..< n * rows).map { _ in Float(rng.normal()) }
                let y = Tensor.cpu(start, shape: [n, rows])
                let before = QuantizedDecoding.multiplications
                CPUBackend.shared.linear(Tensor.cpu(x, shape: [n, cols]), frozen: w, bias: Tensor.cpu(bias, shape: [rows]),
                                         into: y, accumulate: true)
                XCTAssertEqual(QuantizedDecoding.multiplications - before, n <= QuantizedDecoding.maxRows ? 1 : 0, "\(type) n=\(n)")
                let out = y.toArray()
                for j in 0 ..< n {
                    for r in 0 ..< rows {
                        var ref = Double(start[j * rows + r]) + Double(bias[r]), mag = 0.0, wabs = 0.0
                        for i in 0 ..< cols {
                            ref += Double(wf[r * cols + i]) * Double(x[j * cols + i])
                            mag += abs(Double(wf[r * cols + i]) * Double(x[j * cols + i]))
                            wabs += abs(Double(wf[r * cols + i]))
                        }
                        // Loose on purpose: the bound of the int8 test above, with x's absmax taken row-wide.
                        let amax = (0 ..< cols).map { Double(abs(x[j * cols + $0])) }.max()!
                        let bound = amax / 254 * wabs + 2e-5 * mag + 1e-5 * abs(ref)
                        XCTAssertLessThanOrEqual(abs(Double(out[j * rows + r]) - ref), bound, "\(type) n=\(n) y[\(j), \(r)]")
                    }
                }
            }
        }
    }

    /// Several products of one x as one job (a layer's q, k and v;
    /// `Linear.forwardShared` → `CPUBackend.linearShared`): every output is
    /// bit for bit what each product gives alone, for mixed block types (x
    /// rounded once per layout, 32 and 256), a permuted q, biases, 1 to 3
    /// threads and both modes. Above `maxRows` rows it declines (the caller
    /// multiplies each alone).
    func testSharedProductsEqualEachAlone() throws {
        var rng = SeededRandom(seed: UInt64.random(in: 0 ... .max))
        let cols = 512
        let shapes: [(GGMLType, Int, Int?)] = [(.q4_1, 64, 4), (.q6_K, 16, nil), (.q8_0, 48, nil), (.q4_K, 40, nil)]
        let weights = try shapes.map { t, rows, heads in
            try FrozenWeight.ggml(type: t, bytes: Self.randomBlocks(t, rows: rows, cols: cols, rng: &rng),
                                  rows: rows, cols: cols, permuteHeads: heads)
        }
        let biases: [Tensor?] = shapes.enumerated().map { i, s in
            i % 2 == 0 ? Tensor.cpu((0 ..< s.1).map { _ in Float(rng.normal()) }, shape: [s.1]) : nil
        }
        let saved = (CPUBackend.threads, QuantizedDecoding.mode)
        defer { CPUBackend.threads = saved.0; QuantizedDecoding.mode = saved.1 }
        for mode in QuantizedDecoding.Mode.allCases {
            QuantizedDecoding.mode = mode
            for threads in [1, 2, 3] {
                CPUBackend.threads = threads
                for n in [1, 3, QuantizedDecoding.maxRows] {
                    let x = Tensor.cpu((0 ..< n * cols).map { _ in Float(rng.normal()) }, shape: [n, cols])
                    let together = shapes.map { Tensor.cpu([Float](repeating: .nan, count: n * $0.1), shape: [n, $0.1]) }
                    XCTAssertTrue(CPUBackend.shared.linearShared(x, frozen: weights, biases: biases, into: together))
                    for (i, w) in weights.enumerated() {
                        let alone = Tensor.zeros([n, shapes[i].1])
                        CPUBackend.shared.linear(x, frozen: w, bias: biases[i], into: alone, accumulate: false)
                        XCTAssertEqual(together[i].toArray(), alone.toArray(), "\(mode) threads=\(threads) n=\(n) \(shapes[i].0)")
                    }
                }
            }
        }
        let tall = Tensor.zeros([QuantizedDecoding.maxRows + 1, cols])
        XCTAssertFalse(CPUBackend.shared.linearShared(tall, frozen: weights, biases: biases,
                                                      into: shapes.map { Tensor.zeros([QuantizedDecoding.maxRows + 1, $0.1]) }))
    }

    /// The real SmolLM2 (Q4_1/Q8_0 blocks): greedy decoding on its blocks in
    /// place with the f32 kernels gives the tokens decoding on their f32
    /// dequantization gives. The int8 kernels round activations as llama.cpp
    /// does, which moves logits by ~0.1 % and may flip a near-tie later in a
    /// continuation ("def fibonacci(n):" does at token 6, both continuations
    /// fluent): for them the first token must agree and the first step's
    /// logits stay within 3 % of their range.
    func testGreedyDecodeOnCompactBlocksMatchesF32() throws {
        let path = TestPaths.smolLM2
        let (f32Model, _) = try ModelLoader.load(path, baseWeights: .f32)
        let (compact, _) = try ModelLoader.load(path, baseWeights: ModelLoader.decodingBase(path, requested: .f32, backend: CPUBackend.shared))
        compact.dequantizeFrozenWeights()
        XCTAssert(compact.layers.allSatisfy { $0.projections.allSatisfy { $0.1.frozen.decodesInPlace } },
                  "every SmolLM2 projection stays in its blocks")
        XCTAssertNotNil(compact.compactLMHead, "the tied output head is read from token_embd's blocks")
        let tokenizer = try Tokenizer.load(source: path)
        let saved = QuantizedDecoding.mode
        defer { QuantizedDecoding.mode = saved }
        for prompt in ["The capital of France is", "def fibonacci(n):"] {
            let ids = tokenizer.encode(prompt, addSpecialTokens: true).map(Int32.init)
            let a = Generator(model: f32Model).generate(prompt: ids, maxNewTokens: 12).tokens
            QuantizedDecoding.mode = .f32
            let before = QuantizedDecoding.multiplications
            let b = Generator(model: compact).generate(prompt: ids, maxNewTokens: 12).tokens
            XCTAssertGreaterThan(QuantizedDecoding.multiplications - before, 11 * 7 * compact.layers.count, "decoded on the kernels")
            XCTAssertEqual(a, b, "\"\(prompt)\": f32 \(tokenizer.decode(a.map(Int.init))) vs compact \(tokenizer.decode(b.map(Int.init)))")
            QuantizedDecoding.mode = .int8
            let la = f32Model.forward(ids: ids, logitRows: [ids.count - 1]).toArray()
            let lb = compact.forward(ids: ids + [a[0]], logitRows: [ids.count - 1]).toArray()  // 2 rows: the kernels
            let range = Double(la.max()! - la.min()!)
            let err = Double(zip(la, lb).map { abs($0 - $1) }.max()!)
            // The largest of 49152 logits after 30 layers of rounded activations:
            // 2.1 % of the range for "The capital of France is" on a Zen 4 with AVX-512.
            XCTAssertLessThanOrEqual(err, 0.03 * range, "\(prompt): int8 logits moved by \(err) of a range \(range)")
            XCTAssertEqual(la.indices.max { la[$0] < la[$1] }, lb.indices.max { lb[$0] < lb[$1] }, "\(prompt): the int8 path's first token")
        }
    }
}
