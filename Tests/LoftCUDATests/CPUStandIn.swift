import LoftCUDA
import LoftFormats
import LoftTensors

/// The CPU backend dressed as a checkable GPU: the kernel-check harness runs
/// against it on machines without CUDA, which proves the harness (shapes,
/// poisoning, references, tolerances) before it ever meets a device. bf16
/// weights are simulated by rounding to bf16 and keeping f32.
final class CPUStandIn: CheckableBackend, @unchecked Sendable {
    let cpu = CPUBackend()
    var name: String { "cpu stand-in" }
    var device: Device { .cpu }
    var gemmFallback = false

    /// Storages of "bf16" tensors: a product with one rounds its other
    /// operand to bf16 too, as the CUDA backend does before cuBLASLt.
    private var bf16Storages: Set<ObjectIdentifier> = []

    func uploadBF16(_ values: [Float], shape: [Int]) -> Tensor {
        let t = cpu.upload(Self.rounded(values), shape: shape)
        bf16Storages.insert(ObjectIdentifier(t.storage))
        return t
    }

    static func rounded(_ v: [Float]) -> [Float] { v.map { BFloat16.toFloat(BFloat16.fromFloat($0)) } }

    private func roundedIfPairedWithBF16(_ t: Tensor, _ other: Tensor) -> Tensor {
        bf16Storages.contains(ObjectIdentifier(other.storage)) ? cpu.upload(Self.rounded(t.toArray()), shape: t.shape) : t
    }
    func dequantizeNF4(packed: [UInt8], absmax: [Float], shape: [Int], blocksize: Int) -> Tensor {
        cpu.upload(NF4.dequantize(packed: packed, absmax: absmax, count: shape.reduce(1, *), blocksize: blocksize), shape: shape)
    }
    func dequantizeGGUF(_ type: GGMLType, blocks: [UInt8], shape: [Int]) throws -> Tensor {
        let t = Tensor.zeros(shape)
        try blocks.withUnsafeBytes { try GGMLDequantizer.dequantize(type, from: $0.baseAddress!, count: t.count, into: t.floats) }
        return t
    }

    func zeros(_ shape: [Int], dtype: DType) -> Tensor { cpu.zeros(shape, dtype: dtype) }
    func upload(_ values: [Float], shape: [Int]) -> Tensor { cpu.upload(values, shape: shape) }
    func download(_ tensor: Tensor) -> [Float] { cpu.download(tensor) }
    func copy(_ source: Tensor, into destination: Tensor) { cpu.copy(source, into: destination) }
    func gatherRows(_ source: Tensor, rows: [Int32], scales: [Float]?, into destination: Tensor) {
        cpu.gatherRows(source, rows: rows, scales: scales, into: destination)
    }
    func scatterAddRows(_ source: Tensor, rows: [Int32], scales: [Float]?, into destination: Tensor) {
        cpu.scatterAddRows(source, rows: rows, scales: scales, into: destination)
    }
    func copyColumns(_ source: Tensor, from: Int, into destination: Tensor, at: Int, count: Int) {
        cpu.copyColumns(source, from: from, into: destination, at: at, count: count)
    }
    func linear(_ x: Tensor, _ w: Tensor, bias: Tensor?, into y: Tensor, accumulate: Bool) {
        cpu.linear(roundedIfPairedWithBF16(x, w), w, bias: bias, into: y, accumulate: accumulate)
    }
    func linearBackwardInput(_ dy: Tensor, _ w: Tensor, into dx: Tensor, accumulate: Bool) {
        cpu.linearBackwardInput(roundedIfPairedWithBF16(dy, w), w, into: dx, accumulate: accumulate)
    }
    func linearBackwardWeight(_ dy: Tensor, _ x: Tensor, into dw: Tensor, accumulate: Bool) {
        cpu.linearBackwardWeight(dy, x, into: dw, accumulate: accumulate)
    }
    func rmsNorm(_ x: Tensor, weight: Tensor, eps: Float, weightOffset: Float, into y: Tensor, rstd: Tensor?) {
        cpu.rmsNorm(x, weight: weight, eps: eps, weightOffset: weightOffset, into: y, rstd: rstd)
    }
    func rmsNormBackward(_ dy: Tensor, x: Tensor, weight: Tensor, weightOffset: Float, rstd: Tensor,
                         dx: Tensor, accumulate: Bool, dweight: Tensor?) {
        cpu.rmsNormBackward(dy, x: x, weight: weight, weightOffset: weightOffset, rstd: rstd, dx: dx, accumulate: accumulate, dweight: dweight)
    }
    func rope(_ x: Tensor, heads: Int, headDim: Int, positions: [Int32], invFreq: [Float], attentionScale: Float, inverse: Bool) {
        cpu.rope(x, heads: heads, headDim: headDim, positions: positions, invFreq: invFreq, attentionScale: attentionScale, inverse: inverse)
    }
    func attention(q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor?, spec: AttentionSpec) {
        cpu.attention(q: q, k: k, v: v, out: out, lse: lse, spec: spec)
    }
    func attentionBackward(dOut: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor,
                           dq: Tensor, dk: Tensor, dv: Tensor, spec: AttentionSpec) {
        cpu.attentionBackward(dOut: dOut, q: q, k: k, v: v, out: out, lse: lse, dq: dq, dk: dk, dv: dv, spec: spec)
    }
    func swiglu(gate: Tensor, up: Tensor, into out: Tensor) { cpu.swiglu(gate: gate, up: up, into: out) }
    func swigluBackward(_ dOut: Tensor, gate: Tensor, up: Tensor, dGate: Tensor, dUp: Tensor) {
        cpu.swigluBackward(dOut, gate: gate, up: up, dGate: dGate, dUp: dUp)
    }
    func softcap(_ x: Tensor, cap: Float) { cpu.softcap(x, cap: cap) }
    func softcapBackward(_ dy: Tensor, capped: Tensor, cap: Float) { cpu.softcapBackward(dy, capped: capped, cap: cap) }
    func geglu(gate: Tensor, up: Tensor, into out: Tensor) { cpu.geglu(gate: gate, up: up, into: out) }
    func gegluBackward(_ dOut: Tensor, gate: Tensor, up: Tensor, dGate: Tensor, dUp: Tensor) {
        cpu.gegluBackward(dOut, gate: gate, up: up, dGate: dGate, dUp: dUp)
    }
    func add(_ a: Tensor, _ b: Tensor, into y: Tensor) { cpu.add(a, b, into: y) }
    func axpy(_ alpha: Float, _ x: Tensor, _ y: Tensor) { cpu.axpy(alpha, x, y) }
    func scale(_ x: Tensor, by alpha: Float) { cpu.scale(x, by: alpha) }
    func embedding(ids: [Int32], table: Tensor, into out: Tensor) { cpu.embedding(ids: ids, table: table, into: out) }
    func embeddingBackward(ids: [Int32], dOut: Tensor, dTable: Tensor) { cpu.embeddingBackward(ids: ids, dOut: dOut, dTable: dTable) }
    func crossEntropy(logits: Tensor, labels: [Int32], dLogits: Tensor?, gradScale: Float) -> Double {
        cpu.crossEntropy(logits: logits, labels: labels, dLogits: dLogits, gradScale: gradScale)
    }
    func scaleColumns(_ x: Tensor, by scales: Tensor, into y: Tensor, accumulate: Bool) {
        cpu.scaleColumns(x, by: scales, into: y, accumulate: accumulate)
    }
    func columnDots(_ a: Tensor, _ b: Tensor, into out: Tensor, accumulate: Bool) {
        cpu.columnDots(a, b, into: out, accumulate: accumulate)
    }
    func adamW8bit(param: Tensor, grad: Tensor, m: BlockwiseQuantizedVector, v: BlockwiseQuantizedVector, hyper: AdamWHyper) {
        cpu.adamW8bit(param: param, grad: grad, m: m, v: v, hyper: hyper)
    }
    func adamW(param: Tensor, grad: Tensor, m: Tensor, v: Tensor, hyper: AdamWHyper) {
        cpu.adamW(param: param, grad: grad, m: m, v: v, hyper: hyper)
    }
    func sumOfSquares(_ x: Tensor) -> Double { cpu.sumOfSquares(x) }
    func dropoutMask(_ mask: Tensor, probability: Float, seed: UInt64) { cpu.dropoutMask(mask, probability: probability, seed: seed) }
    func multiply(_ a: Tensor, _ b: Tensor, into y: Tensor) { cpu.multiply(a, b, into: y) }
}
