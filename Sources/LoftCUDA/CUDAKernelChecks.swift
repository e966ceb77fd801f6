import Foundation
import LoftFormats
import LoftTensors

/// One comparison of a GPU result against the CPU backend.
public struct CUDACheck: Sendable {
    public let name: String
    /// ‖gpu − cpu‖ / ‖cpu‖ (for masks: the fraction of elements that differ).
    public let error: Double
    public let tolerance: Double
    /// NaN never passes: an output the kernel failed to write stays poisoned.
    public var passed: Bool { !error.isNaN && error <= tolerance }

    public init(name: String, error: Double, tolerance: Double) {
        self.name = name
        self.error = error
        self.tolerance = tolerance
    }

    /// ‖a − b‖ / ‖b‖ in double (‖a‖ when b is all zeros).
    public static func relativeError(_ a: [Float], _ b: [Float]) -> Double {
        guard a.count == b.count else { return .nan }
        var diff = 0.0, norm = 0.0
        for i in a.indices {
            let d = Double(a[i]) - Double(b[i])
            diff += d * d
            norm += Double(b[i]) * Double(b[i])
        }
        if diff.isNaN { return .nan }
        return norm > 0 ? (diff / norm).squareRoot() : diff.squareRoot()
    }
}

/// What the checks need beyond the Backend protocol: bf16 weights and the
/// dequantization kernels. CUDABackend provides them; a CPU stand-in in the
/// tests does too, so the harness itself is exercised on machines without a GPU.
public protocol CheckableBackend: Backend {
    func uploadBF16(_ values: [Float], shape: [Int]) -> Tensor
    func dequantizeNF4(packed: [UInt8], absmax: [Float], shape: [Int], blocksize: Int) -> Tensor
    func dequantizeGGUF(_ type: GGMLType, blocks: [UInt8], shape: [Int]) throws -> Tensor
    /// Run GEMMs in Loft's fallback kernel instead of the library's.
    var gemmFallback: Bool { get set }
}

extension CUDABackend: CheckableBackend {}

/// Every CUDA kernel and GEMM against the CPU backend on fresh random inputs
/// (the seed is printed, so a failure can be replayed). Outputs are poisoned
/// with NaN before each GPU run, so an element the kernel never wrote fails.
/// Tolerances follow the project's method: f32 arithmetic 1e-4 relative,
/// bf16 operands 1e-2, masks and dequantization exact.
public final class CUDAKernelChecks {
    public static let f32Tolerance = 1e-4
    public static let bf16Tolerance = 1e-2

    public let gpu: CheckableBackend
    let cpu = CPUBackend()
    public let seed: UInt64
    private var state: UInt64

    public init(backend: CheckableBackend, seed: UInt64? = nil) {
        gpu = backend
        self.seed = seed ?? UInt64.random(in: 1 ... UInt64.max)
        state = self.seed
    }

    // MARK: random inputs

    private func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    private func uniform() -> Float { Float(next() >> 40) / Float(1 << 24) }
    /// Uniform in [−scale, scale).
    func random(_ n: Int, scale: Float = 1) -> [Float] { (0 ..< n).map { _ in (uniform() * 2 - 1) * scale } }
    func randomInt(_ below: Int) -> Int { Int(next() % UInt64(below)) }

    func cpuTensor(_ v: [Float], _ shape: [Int]) -> Tensor { cpu.upload(v, shape: shape) }
    func gpuTensor(_ v: [Float], _ shape: [Int]) -> Tensor { gpu.upload(v, shape: shape) }
    /// A GPU tensor filled with NaN: whatever the kernel leaves unwritten shows.
    func poisoned(_ shape: [Int]) -> Tensor { gpu.upload([Float](repeating: .nan, count: shape.reduce(1, *)), shape: shape) }
    static func roundedToBF16(_ v: [Float]) -> [Float] { v.map { BFloat16.toFloat(BFloat16.fromFloat($0)) } }

    private func check(_ name: String, _ got: Tensor, _ want: Tensor, tolerance: Double = f32Tolerance) -> CUDACheck {
        CUDACheck(name: name, error: CUDACheck.relativeError(gpu.download(got), want.toArray()), tolerance: tolerance)
    }

    // MARK: the checks

    /// Every check, in a fixed order.
    public func runAll() -> [CUDACheck] {
        linear() + normalization() + rope() + attention() + elementwise() + embedding() + loss() + optimizer() + quantization()
    }

    public func linear() -> [CUDACheck] {
        var out: [CUDACheck] = []
        let (n, k, m) = (37 + randomInt(30), 96 + randomInt(64), 80 + randomInt(48))
        let x = random(n * k), w = random(m * k, scale: 0.2), b = random(m), y0 = random(n * m)
        // y = x·wᵀ, and y += x·wᵀ + bias.
        let yc = cpu.zeros([n, m])
        cpu.linear(cpuTensor(x, [n, k]), cpuTensor(w, [m, k]), bias: nil, into: yc, accumulate: false)
        let yg = poisoned([n, m])
        gpu.linear(gpuTensor(x, [n, k]), gpuTensor(w, [m, k]), bias: nil, into: yg, accumulate: false)
        out.append(check("linear f32", yg, yc))
        let yc2 = cpuTensor(y0, [n, m]), yg2 = gpuTensor(y0, [n, m])
        cpu.linear(cpuTensor(x, [n, k]), cpuTensor(w, [m, k]), bias: cpuTensor(b, [m]), into: yc2, accumulate: true)
        gpu.linear(gpuTensor(x, [n, k]), gpuTensor(w, [m, k]), bias: gpuTensor(b, [m]), into: yg2, accumulate: true)
        out.append(check("linear f32 + bias, accumulate", yg2, yc2))
        // bf16 weights: against the CPU on the same rounded operands (the
        // arithmetic), and against unrounded f32 (what a user sees).
        let wb = Self.roundedToBF16(w), xb = Self.roundedToBF16(x)
        let yc3 = cpu.zeros([n, m])
        cpu.linear(cpuTensor(xb, [n, k]), cpuTensor(wb, [m, k]), bias: nil, into: yc3, accumulate: false)
        let yg3 = poisoned([n, m])
        gpu.linear(gpuTensor(x, [n, k]), gpu.uploadBF16(w, shape: [m, k]), bias: nil, into: yg3, accumulate: false)
        out.append(check("linear bf16 weights (rounded operands)", yg3, yc3))
        out.append(check("linear bf16 weights (vs f32)", yg3, yc, tolerance: Self.bf16Tolerance))
        // dx (+)= dy·w ; dw (+)= dyᵀ·x
        let dy = random(n * m), dx0 = random(n * k), dw0 = random(m * k)
        let dxc = cpuTensor(dx0, [n, k]), dxg = gpuTensor(dx0, [n, k])
        cpu.linearBackwardInput(cpuTensor(dy, [n, m]), cpuTensor(w, [m, k]), into: dxc, accumulate: true)
        gpu.linearBackwardInput(gpuTensor(dy, [n, m]), gpuTensor(w, [m, k]), into: dxg, accumulate: true)
        out.append(check("linearBackwardInput f32, accumulate", dxg, dxc))
        let dxc2 = cpu.zeros([n, k]), dxg2 = poisoned([n, k])
        cpu.linearBackwardInput(cpuTensor(Self.roundedToBF16(dy), [n, m]), cpuTensor(wb, [m, k]), into: dxc2, accumulate: false)
        gpu.linearBackwardInput(gpuTensor(dy, [n, m]), gpu.uploadBF16(w, shape: [m, k]), into: dxg2, accumulate: false)
        out.append(check("linearBackwardInput bf16 weights", dxg2, dxc2))
        let dwc = cpu.zeros([m, k]), dwg = poisoned([m, k])
        cpu.linearBackwardWeight(cpuTensor(dy, [n, m]), cpuTensor(x, [n, k]), into: dwc, accumulate: false)
        gpu.linearBackwardWeight(gpuTensor(dy, [n, m]), gpuTensor(x, [n, k]), into: dwg, accumulate: false)
        out.append(check("linearBackwardWeight f32", dwg, dwc))
        let dwc2 = cpuTensor(dw0, [m, k]), dwg2 = gpuTensor(dw0, [m, k])
        cpu.linearBackwardWeight(cpuTensor(dy, [n, m]), cpuTensor(x, [n, k]), into: dwc2, accumulate: true)
        gpu.linearBackwardWeight(gpuTensor(dy, [n, m]), gpuTensor(x, [n, k]), into: dwg2, accumulate: true)
        out.append(check("linearBackwardWeight f32, accumulate", dwg2, dwc2))
        // The same products through the fallback kernel (used where cuBLASLt
        // has no algorithm): every transpose combination and both input types.
        gpu.gemmFallback = true
        defer { gpu.gemmFallback = false }
        let yg4 = poisoned([n, m])
        gpu.linear(gpuTensor(x, [n, k]), gpuTensor(w, [m, k]), bias: nil, into: yg4, accumulate: false)
        out.append(check("linear f32 (fallback GEMM)", yg4, yc))
        let yg5 = poisoned([n, m])
        gpu.linear(gpuTensor(x, [n, k]), gpu.uploadBF16(w, shape: [m, k]), bias: nil, into: yg5, accumulate: false)
        out.append(check("linear bf16 weights (fallback GEMM)", yg5, yc3))
        let dxg3 = gpuTensor(dx0, [n, k])
        gpu.linearBackwardInput(gpuTensor(dy, [n, m]), gpuTensor(w, [m, k]), into: dxg3, accumulate: true)
        out.append(check("linearBackwardInput f32, accumulate (fallback GEMM)", dxg3, dxc))
        let dwg3 = gpuTensor(dw0, [m, k])
        gpu.linearBackwardWeight(gpuTensor(dy, [n, m]), gpuTensor(x, [n, k]), into: dwg3, accumulate: true)
        out.append(check("linearBackwardWeight f32, accumulate (fallback GEMM)", dwg3, dwc2))
        return out
    }

    public func normalization() -> [CUDACheck] {
        var out: [CUDACheck] = []
        let (n, d) = (19 + randomInt(20), 200 + randomInt(300))
        for offset: Float in [0, 1] {
            let x = random(n * d, scale: 3), w = random(d)
            let yc = cpu.zeros([n, d]), rc = cpu.zeros([n])
            cpu.rmsNorm(cpuTensor(x, [n, d]), weight: cpuTensor(w, [d]), eps: 1e-5, weightOffset: offset, into: yc, rstd: rc)
            let yg = poisoned([n, d]), rg = poisoned([n])
            gpu.rmsNorm(gpuTensor(x, [n, d]), weight: gpuTensor(w, [d]), eps: 1e-5, weightOffset: offset, into: yg, rstd: rg)
            out.append(check("rmsNorm offset \(offset)", yg, yc))
            out.append(check("rmsNorm rstd offset \(offset)", rg, rc))
            let dy = random(n * d), dx0 = random(n * d), dw0 = random(d)
            let dxc = cpuTensor(dx0, [n, d]), dwc = cpuTensor(dw0, [d])
            cpu.rmsNormBackward(cpuTensor(dy, [n, d]), x: cpuTensor(x, [n, d]), weight: cpuTensor(w, [d]), weightOffset: offset,
                                rstd: rc, dx: dxc, accumulate: true, dweight: dwc)
            let dxg = gpuTensor(dx0, [n, d]), dwg = gpuTensor(dw0, [d])
            gpu.rmsNormBackward(gpuTensor(dy, [n, d]), x: gpuTensor(x, [n, d]), weight: gpuTensor(w, [d]), weightOffset: offset,
                                rstd: gpuTensor(rc.toArray(), [n]), dx: dxg, accumulate: true, dweight: dwg)
            out.append(check("rmsNormBackward dx offset \(offset)", dxg, dxc))
            out.append(check("rmsNormBackward dweight offset \(offset)", dwg, dwc))
            let dxc2 = cpu.zeros([n, d]), dxg2 = poisoned([n, d])
            cpu.rmsNormBackward(cpuTensor(dy, [n, d]), x: cpuTensor(x, [n, d]), weight: cpuTensor(w, [d]), weightOffset: offset,
                                rstd: rc, dx: dxc2, accumulate: false, dweight: nil)
            gpu.rmsNormBackward(gpuTensor(dy, [n, d]), x: gpuTensor(x, [n, d]), weight: gpuTensor(w, [d]), weightOffset: offset,
                                rstd: gpuTensor(rc.toArray(), [n]), dx: dxg2, accumulate: false, dweight: nil)
            out.append(check("rmsNormBackward dx overwrite offset \(offset)", dxg2, dxc2))
        }
        return out
    }

    public func rope() -> [CUDACheck] {
        var out: [CUDACheck] = []
        let (n, heads, dim) = (23 + randomInt(20), 3, 16 * (1 + randomInt(4)))
        let positions = (0 ..< n).map { _ in Int32(randomInt(4096)) }
        // Whole heads, and the first 3/4 of each (partial rotary, Phi-4-mini).
        for rotary in [dim, dim * 3 / 4] {
            let invFreq = (0 ..< rotary / 2).map { i in Float(1 / Foundation.pow(10000.0, Double(2 * i) / Double(rotary))) }
            for inverse in [false, true] {
                let x = random(n * heads * dim)
                let xc = cpuTensor(x, [n, heads * dim]), xg = gpuTensor(x, [n, heads * dim])
                cpu.rope(xc, heads: heads, headDim: dim, positions: positions, invFreq: invFreq, attentionScale: 1.1, inverse: inverse)
                gpu.rope(xg, heads: heads, headDim: dim, positions: positions, invFreq: invFreq, attentionScale: 1.1, inverse: inverse)
                out.append(check("rope\(rotary < dim ? " partial" : "")\(inverse ? " inverse" : "")", xg, xc))
            }
        }
        return out
    }

    /// Shapes that cover GQA, packed segments, a sliding window, queries
    /// offset into a longer key range (decoding with a cache), and head sizes
    /// from 16 to 256.
    public func attention() -> [CUDACheck] {
        var out: [CUDACheck] = []
        struct Case { let name: String; let nq: Int; let nk: Int; let h: Int; let kv: Int; let d: Int; let segments: [Int]; let window: Int? }
        let cases = [
            Case(name: "causal", nq: 53, nk: 53, h: 2, kv: 2, d: 16, segments: [0], window: nil),
            Case(name: "GQA + segments", nq: 70, nk: 70, h: 4, kv: 2, d: 32, segments: [0, 20, 45], window: nil),
            Case(name: "GQA + window", nq: 90, nk: 90, h: 6, kv: 2, d: 64, segments: [0, 37], window: 13),
            Case(name: "query offset", nq: 9, nk: 75, h: 4, kv: 1, d: 128, segments: [0, 30], window: nil),
            Case(name: "head size 256", nq: 33, nk: 33, h: 2, kv: 1, d: 256, segments: [0], window: nil),
        ]
        for c in cases {
            var spec = AttentionSpec(heads: c.h, kvHeads: c.kv, headDim: c.d, queryOffset: c.nk - c.nq, segments: c.segments, window: c.window)
            spec.scale = 1 / Float(c.d).squareRoot()
            let q = random(c.nq * c.h * c.d, scale: 2), k = random(c.nk * c.kv * c.d, scale: 2), v = random(c.nk * c.kv * c.d)
            let (qs, ks) = ([c.nq, c.h * c.d], [c.nk, c.kv * c.d])
            let oc = cpu.zeros(qs), lc = cpu.zeros([c.h * c.nq])
            cpu.attention(q: cpuTensor(q, qs), k: cpuTensor(k, ks), v: cpuTensor(v, ks), out: oc, lse: lc, spec: spec)
            let og = poisoned(qs), lg = poisoned([c.h * c.nq])
            gpu.attention(q: gpuTensor(q, qs), k: gpuTensor(k, ks), v: gpuTensor(v, ks), out: og, lse: lg, spec: spec)
            out.append(check("attention \(c.name) out", og, oc))
            out.append(check("attention \(c.name) lse", lg, lc))
            let dout = random(c.nq * c.h * c.d)
            let dqc = cpu.zeros(qs), dkc = cpu.zeros(ks), dvc = cpu.zeros(ks)
            cpu.attentionBackward(dOut: cpuTensor(dout, qs), q: cpuTensor(q, qs), k: cpuTensor(k, ks), v: cpuTensor(v, ks), out: oc, lse: lc,
                                  dq: dqc, dk: dkc, dv: dvc, spec: spec)
            let dqg = poisoned(qs), dkg = poisoned(ks), dvg = poisoned(ks)
            gpu.attentionBackward(dOut: gpuTensor(dout, qs), q: gpuTensor(q, qs), k: gpuTensor(k, ks), v: gpuTensor(v, ks),
                                  out: gpuTensor(oc.toArray(), qs), lse: gpuTensor(lc.toArray(), [c.h * c.nq]),
                                  dq: dqg, dk: dkg, dv: dvg, spec: spec)
            out.append(check("attentionBackward \(c.name) dq", dqg, dqc))
            out.append(check("attentionBackward \(c.name) dk", dkg, dkc))
            out.append(check("attentionBackward \(c.name) dv", dvg, dvc))
        }
        return out
    }

    public func elementwise() -> [CUDACheck] {
        var out: [CUDACheck] = []
        let n = 10_000 + randomInt(5000)
        let a = random(n, scale: 4), b = random(n), c = random(n)
        func pair(_ v: [Float]) -> (Tensor, Tensor) { (cpuTensor(v, [n]), gpuTensor(v, [n])) }
        typealias Gated = (Backend) -> (Tensor, Tensor, Tensor) -> Void
        typealias GatedBackward = (Backend) -> (Tensor, Tensor, Tensor, Tensor, Tensor) -> Void
        let activations: [(String, Gated, GatedBackward)] = [
            ("swiglu", { b in { b.swiglu(gate: $0, up: $1, into: $2) } },
             { b in { b.swigluBackward($0, gate: $1, up: $2, dGate: $3, dUp: $4) } }),
            ("geglu", { b in { b.geglu(gate: $0, up: $1, into: $2) } },
             { b in { b.gegluBackward($0, gate: $1, up: $2, dGate: $3, dUp: $4) } }),
        ]
        for (name, forward, backward) in activations {
            let (sc, sg) = (cpu.zeros([n]), poisoned([n]))
            forward(cpu)(pair(a).0, pair(b).0, sc)
            forward(gpu)(pair(a).1, pair(b).1, sg)
            out.append(check(name, sg, sc))
            let (dgc, duc, dgg, dug) = (cpu.zeros([n]), cpu.zeros([n]), poisoned([n]), poisoned([n]))
            backward(cpu)(pair(c).0, pair(a).0, pair(b).0, dgc, duc)
            backward(gpu)(pair(c).1, pair(a).1, pair(b).1, dgg, dug)
            out.append(check("\(name)Backward dgate", dgg, dgc))
            out.append(check("\(name)Backward dup", dug, duc))
        }
        // A fused projection's output [rows, 3 parts] split, then one part joined back.
        let fusedRows = 17 + randomInt(20), widths = [24 + randomInt(40), 8 + randomInt(16), 8 + randomInt(16)]
        let fused = random(fusedRows * widths.reduce(0, +))
        let (fusedC, fusedG) = (cpuTensor(fused, [fusedRows, widths.reduce(0, +)]), gpuTensor(fused, [fusedRows, widths.reduce(0, +)]))
        let (partC, partG) = (cpu.zeros([fusedRows, widths[1]]), poisoned([fusedRows, widths[1]]))
        cpu.copyColumns(fusedC, from: widths[0], into: partC, at: 0, count: widths[1])
        gpu.copyColumns(fusedG, from: widths[0], into: partG, at: 0, count: widths[1])
        out.append(check("copyColumns split", partG, partC))
        cpu.copyColumns(partC, from: 0, into: fusedC, at: widths[0] + widths[1], count: widths[1])
        gpu.copyColumns(partG, from: 0, into: fusedG, at: widths[0] + widths[1], count: widths[1])
        out.append(check("copyColumns join", fusedG, fusedC))
        // Tokens routed to an expert: gathered with their weights, then added back.
        let picked: [Int32] = (0 ..< fusedRows).filter { _ in randomInt(3) > 0 }.map(Int32.init)
        let weights = random(picked.count)
        let (gatheredC, gatheredG) = (cpu.zeros([picked.count, widths[0]]), poisoned([picked.count, widths[0]]))
        let (sourceC, sourceG) = (cpuTensor(random(fusedRows * widths[0]), [fusedRows, widths[0]]), gpu.zeros([fusedRows, widths[0]], dtype: .f32))
        gpu.copy(sourceC, into: sourceG)
        cpu.gatherRows(sourceC, rows: picked, scales: weights, into: gatheredC)
        gpu.gatherRows(sourceG, rows: picked, scales: weights, into: gatheredG)
        out.append(check("gatherRows", gatheredG, gatheredC))
        cpu.scatterAddRows(gatheredC, rows: picked, scales: nil, into: sourceC)
        gpu.scatterAddRows(gatheredG, rows: picked, scales: nil, into: sourceG)
        out.append(check("scatterAddRows", sourceG, sourceC))
        let (cappedC, cappedG) = pair(a)
        cpu.softcap(cappedC, cap: 3)
        gpu.softcap(cappedG, cap: 3)
        out.append(check("softcap", cappedG, cappedC))
        let (gradC, gradG) = pair(c)
        cpu.softcapBackward(gradC, capped: cappedC, cap: 3)
        gpu.softcapBackward(gradG, capped: cappedG, cap: 3)
        out.append(check("softcapBackward", gradG, gradC))
        let (yc, yg) = (cpu.zeros([n]), poisoned([n]))
        cpu.add(pair(a).0, pair(b).0, into: yc)
        gpu.add(pair(a).1, pair(b).1, into: yg)
        out.append(check("add", yg, yc))
        let (xc, xg) = pair(c)
        cpu.axpy(0.37, pair(a).0, xc)
        gpu.axpy(0.37, pair(a).1, xg)
        out.append(check("axpy", xg, xc))
        cpu.scale(xc, by: -1.7)
        gpu.scale(xg, by: -1.7)
        out.append(check("scale", xg, xc))
        let (mc, mg) = (cpu.zeros([n]), poisoned([n]))
        cpu.multiply(pair(a).0, pair(b).0, into: mc)
        gpu.multiply(pair(a).1, pair(b).1, into: mg)
        out.append(check("multiply", mg, mc))
        // DoRA's column ops on an [rows, cols] view of the same data.
        let cols = 37 + randomInt(60), rows = n / cols
        let sc2 = random(cols, scale: 2)
        func matrix(_ v: [Float]) -> (Tensor, Tensor) {
            let part = Array(v[0 ..< rows * cols])
            return (cpuTensor(part, [rows, cols]), gpuTensor(part, [rows, cols]))
        }
        let (yc0, yg0) = matrix(c)
        cpu.scaleColumns(matrix(a).0, by: cpuTensor(sc2, [cols]), into: yc0, accumulate: true)
        gpu.scaleColumns(matrix(a).1, by: gpuTensor(sc2, [cols]), into: yg0, accumulate: true)
        out.append(check("scaleColumns (accumulate)", yg0, yc0))
        let (dotc, dotg) = (cpu.zeros([cols]), poisoned([cols]))
        cpu.columnDots(matrix(a).0, matrix(b).0, into: dotc, accumulate: false)
        gpu.columnDots(matrix(a).1, matrix(b).1, into: dotg, accumulate: false)
        out.append(check("columnDots", dotg, dotc))
        let seed = next()
        let (dc, dg) = (cpu.zeros([n]), poisoned([n]))
        cpu.dropoutMask(dc, probability: 0.1, seed: seed)
        gpu.dropoutMask(dg, probability: 0.1, seed: seed)
        let gotMask = gpu.download(dg), wantMask = dc.toArray()
        let differing = zip(gotMask, wantMask).filter { $0 != $1 }.count
        out.append(CUDACheck(name: "dropoutMask (same stream as the CPU)", error: Double(differing) / Double(n), tolerance: 0))
        return out
    }

    public func embedding() -> [CUDACheck] {
        let (vocab, d, n) = (50, 24 + randomInt(40), 33 + randomInt(30))
        let table = random(vocab * d)
        // Few distinct ids, so rows repeat and the backward's scatter collides.
        let ids = (0 ..< n).map { _ in Int32(randomInt(7) * 7) }
        let (oc, og) = (cpu.zeros([n, d]), poisoned([n, d]))
        cpu.embedding(ids: ids, table: cpuTensor(table, [vocab, d]), into: oc)
        gpu.embedding(ids: ids, table: gpuTensor(table, [vocab, d]), into: og)
        let dout = random(n * d), t0 = random(vocab * d)
        let (tc, tg) = (cpuTensor(t0, [vocab, d]), gpuTensor(t0, [vocab, d]))
        cpu.embeddingBackward(ids: ids, dOut: cpuTensor(dout, [n, d]), dTable: tc)
        gpu.embeddingBackward(ids: ids, dOut: gpuTensor(dout, [n, d]), dTable: tg)
        return [check("embedding", og, oc), check("embeddingBackward", tg, tc)]
    }

    public func loss() -> [CUDACheck] {
        let (n, v) = (13 + randomInt(10), 1000 + randomInt(3000))
        let logits = random(n * v, scale: 6)
        var labels = (0 ..< n).map { _ in Int32(randomInt(v)) }
        labels[1] = -100
        labels[n - 1] = -100
        let lc = cpuTensor(logits, [n, v]), lg = gpuTensor(logits, [n, v])
        let lossC = cpu.crossEntropy(logits: lc, labels: labels, dLogits: lc, gradScale: 0.25)
        let lossG = gpu.crossEntropy(logits: lg, labels: labels, dLogits: lg, gradScale: 0.25)  // in place, as TrainingStep does
        let lossOnly = gpu.crossEntropy(logits: gpuTensor(logits, [n, v]), labels: labels, dLogits: nil, gradScale: 0)
        return [
            CUDACheck(name: "crossEntropy loss", error: abs(lossG - lossC) / abs(lossC), tolerance: Self.f32Tolerance),
            CUDACheck(name: "crossEntropy loss without gradient", error: abs(lossOnly - lossC) / abs(lossC), tolerance: Self.f32Tolerance),
            check("crossEntropy dLogits (aliasing logits)", lg, lc),
        ]
    }

    public func optimizer() -> [CUDACheck] {
        let n = 5000 + randomInt(5000)
        let p = random(n), g = random(n, scale: 0.1), m = random(n, scale: 0.01), v = random(n, scale: 0.001).map(abs)
        let hyper = AdamWHyper(lr: 1e-3, weightDecay: 0.01, step: 3 + randomInt(5))
        let (pc, gc, mc, vc) = (cpuTensor(p, [n]), cpuTensor(g, [n]), cpuTensor(m, [n]), cpuTensor(v, [n]))
        let (pg, gg, mg, vg) = (gpuTensor(p, [n]), gpuTensor(g, [n]), gpuTensor(m, [n]), gpuTensor(v, [n]))
        cpu.adamW(param: pc, grad: gc, m: mc, v: vc, hyper: hyper)
        gpu.adamW(param: pg, grad: gg, m: mg, v: vg, hyper: hyper)
        let big = 100_003 + randomInt(1000)
        let x = random(big, scale: 3)
        let ssC = cpu.sumOfSquares(cpuTensor(x, [big])), ssG = gpu.sumOfSquares(gpuTensor(x, [big]))
        return [check("adamW param", pg, pc), check("adamW m", mg, mc), check("adamW v", vg, vc),
                CUDACheck(name: "sumOfSquares", error: abs(ssG - ssC) / ssC, tolerance: 1e-6)]
    }

    public func quantization() -> [CUDACheck] {
        var out: [CUDACheck] = []
        let count = 64 * (20 + randomInt(20))
        let values = random(count, scale: 2)
        let (packed, absmax) = NF4.quantize(values)
        let want = NF4.dequantize(packed: packed, absmax: absmax, count: count)
        let got = gpu.download(gpu.dequantizeNF4(packed: packed, absmax: absmax, shape: [count / 64, 64], blocksize: 64))
        out.append(CUDACheck(name: "dequantize NF4 (bitsandbytes layout)", error: CUDACheck.relativeError(got, want), tolerance: 1e-7))
        for type in CUDABackend.gpuDequantizedGGUFTypes {
            do {
                let blocks = try GGMLQuantizer.encode(values, rowLength: 64, as: type)
                var reference = [Float](repeating: 0, count: count)
                try blocks.withUnsafeBytes { raw in
                    try reference.withUnsafeMutableBufferPointer { try GGMLDequantizer.dequantize(type, from: raw.baseAddress!, count: count, into: $0.baseAddress!) }
                }
                let gpuValues = gpu.download(try gpu.dequantizeGGUF(type, blocks: blocks, shape: [count / 64, 64]))
                out.append(CUDACheck(name: "dequantize GGUF \(type)", error: CUDACheck.relativeError(gpuValues, reference), tolerance: 1e-7))
            } catch {
                out.append(CUDACheck(name: "dequantize GGUF \(type): \(error)", error: .nan, tolerance: 0))
            }
        }
        return out
    }
}
