import LoftTensors

/// A frozen projection y = x·Wᵀ (+ bias), optionally wrapped by a LoRA
/// adapter that adds scale · (x·Aᵀ)·Bᵀ. Model code calls `forward` and never
/// needs to know whether an adapter is attached.
public final class Linear: @unchecked Sendable {
    /// The frozen W [out, in] as stored: dense f32, or compact (bf16, NF4/FP4,
    /// int8, GGUF blocks) and dequantized tile by tile in the GEMMs.
    /// Settable only by `LlamaModel.dequantizeFrozenWeights()` (inference).
    public internal(set) var frozen: FrozenWeight
    public let bias: Tensor?
    public var lora: LoRA?
    /// Adapters folded under the trained one and never trained (an SFT
    /// adapter under a DPO one): y += Σ scale·B·A·x, in order, before `lora`.
    public var frozenAdapters: [LoRA] = []

    public init(weight: Tensor, bias: Tensor? = nil) {
        self.frozen = FrozenWeight(dense: weight)
        self.bias = bias
    }

    public init(frozen: FrozenWeight, bias: Tensor? = nil) {
        self.frozen = frozen
        self.bias = bias
    }

    /// W as an f32 tensor: the stored one when dense, else a dequantized copy
    /// (merging and export use it; the forward never does).
    public var weight: Tensor { frozen.dequantized() }

    public var inFeatures: Int { frozen.cols }
    public var outFeatures: Int { frozen.rows }

    /// y = x·Wᵀ + bias + LoRA(x). With `saved`, keeps what the backward needs.
    public func forward(_ x: Tensor, into y: Tensor, backend b: Backend, accumulate: Bool = false, saved: LoRA.Saved? = nil) {
        if let lora, lora.magnitude != nil {
            doraForward(x, lora: lora, into: y, backend: b, accumulate: accumulate, saved: saved)
            return
        }
        if saved == nil, lora != nil, Self.forwardFused([self], x, into: [y], accumulate: accumulate, backend: b) { return }
        if let dense = frozen.dense ?? promptWeight(rows: x.count / x.shape.last!) {
            b.linear(x, dense, bias: bias, into: y, accumulate: accumulate)
        } else {
            b.linear(x, frozen: frozen, bias: bias, into: y, accumulate: accumulate)
        }
        for f in frozenAdapters { f.forward(x, into: y, backend: b, saved: nil) }
        lora?.forward(x, into: y, backend: b, saved: saved)
    }

    /// The f32 copy kept beside GGUF blocks for products the decoding
    /// kernels do not take (prompt rows), when there is one.
    func promptWeight(rows n: Int) -> Tensor? {
        guard let copy = frozen.promptCopy, !QuantizedDecoding.usesKernels(rows: n) else { return nil }
        return copy
    }

    /// Decoding on the CPU: the GGUF base products of `linears` (one x) and
    /// their plain LoRA updates as one job (`CPUBackend.linearShared` with
    /// `lowRank`), the same numbers as the base then `LoRA.forward`. False,
    /// having done nothing, where that path does not apply (a dense or
    /// non-GGUF base, DoRA, stacked frozen adapters, more than
    /// `LoRA.fusedRowsLimit` rows).
    static func forwardFused(_ linears: [Linear], _ x: Tensor, into ys: [Tensor], accumulate: Bool, backend b: Backend) -> Bool {
        guard let cpu = b as? CPUBackend, x.count / x.shape.last! <= LoRA.fusedRowsLimit,
              linears.allSatisfy({ $0.frozen.dense == nil && $0.frozenAdapters.isEmpty && $0.lora?.magnitude == nil }) else { return false }
        let n = x.count / x.shape.last!
        let lowRank = linears.map { linear in
            linear.lora.map { [$0.onRows(0 ..< n)] } ?? []
        }
        return cpu.linearShared(x, frozen: linears.map { $0.frozen as FrozenMatrix }, biases: linears.map(\.bias), into: ys,
                                accumulate: accumulate, lowRank: lowRank)
    }

    /// `forward` for several linears of the same x (q, k, v; gate, up), with
    /// the same results: on the CPU, when their frozen weights are GGUF blocks
    /// and x has few rows (decoding), the base products run as one job
    /// (`CPUBackend.linearShared`), then each linear's adapters as in `forward`.
    public static func forwardShared(_ linears: [Linear], _ x: Tensor, into ys: [Tensor], backend b: Backend,
                                     saved: [LoRA.Saved?]? = nil) {
        precondition(linears.count == ys.count)
        if (saved ?? []).allSatisfy({ $0 == nil }), forwardFused(linears, x, into: ys, accumulate: false, backend: b) { return }
        if let cpu = b as? CPUBackend, linears.allSatisfy({ $0.frozen.dense == nil && $0.lora?.magnitude == nil }),
           cpu.linearShared(x, frozen: linears.map { $0.frozen as FrozenMatrix }, biases: linears.map(\.bias), into: ys) {
            for (i, linear) in linears.enumerated() {
                for f in linear.frozenAdapters { f.forward(x, into: ys[i], backend: b, saved: nil) }
                linear.lora?.forward(x, into: ys[i], backend: b, saved: saved?[i])
            }
            return
        }
        for (i, linear) in linears.enumerated() { linear.forward(x, into: ys[i], backend: b, saved: saved?[i]) }
    }

    /// dx (+)= dy·W + the adapter's path; accumulates the adapter's gradients.
    public func backward(_ dy: Tensor, saved: LoRA.Saved?, dx: Tensor, accumulate: Bool, backend b: Backend) {
        if let lora, lora.magnitude != nil, let saved {
            doraBackward(dy, lora: lora, saved: saved, dx: dx, accumulate: accumulate, backend: b)
            return
        }
        frozenProductBackward(dy, into: dx, accumulate: accumulate, backend: b)
        for f in frozenAdapters { f.backwardInput(dy, dx: dx, backend: b) }
        if let lora, let saved { lora.backward(dy, saved: saved, dx: dx, backend: b) }
    }

    // The frozen weight as DoRA sees it: only through these three, so a
    // quantized weight type changes them and nothing in DoRA.swift.

    /// y (+)= x·Wᵀ through the frozen weight alone (no bias, no adapter).
    func frozenProduct(_ x: Tensor, into y: Tensor, accumulate: Bool, backend b: Backend) {
        if let dense = frozen.dense ?? promptWeight(rows: x.count / x.shape.last!) {
            b.linear(x, dense, bias: nil, into: y, accumulate: accumulate)
        } else {
            b.linear(x, frozen: frozen, bias: nil, into: y, accumulate: accumulate)
        }
    }

    /// dx (+)= dy·W through the frozen weight alone.
    func frozenProductBackward(_ dy: Tensor, into dx: Tensor, accumulate: Bool, backend b: Backend) {
        if let dense = frozen.dense {
            b.linearBackwardInput(dy, dense, into: dx, accumulate: accumulate)
        } else {
            b.linearBackwardInput(dy, frozen: frozen, into: dx, accumulate: accumulate)
        }
    }

    /// Σ_k W[o, k]² for each output row o of the (dequantized) frozen weight, in double.
    public func frozenRowSquaredNorms(backend b: Backend) -> [Double] {
        if let dense = frozen.dense { return (0 ..< outFeatures).map { b.sumOfSquares(dense.rows($0 ..< $0 + 1)) } }
        // A compact weight: one dequantized row at a time on the host (W never
        // changes, so DoRA asks once).
        var row = [Float](repeating: 0, count: inFeatures)
        return (0 ..< outFeatures).map { o in
            row.withUnsafeMutableBufferPointer { frozen.dequantizeRows(o ..< o + 1, into: $0.baseAddress!) }
            return row.reduce(0.0) { $0 + Double($1) * Double($1) }
        }
    }
}

/// A low-rank adapter: A [r, in], B [out, r], applied as scale · B·A, with
/// dropout on its input as PEFT does. Gradients accumulate into gradA/gradB.
public final class LoRA: @unchecked Sendable {
    public let a: Tensor
    public let b: Tensor
    public var scale: Float
    public var dropout: Float
    public var gradA: Tensor?
    public var gradB: Tensor?
    /// DoRA's magnitude vector m [out]; nil for plain LoRA (see DoRA.swift).
    public var magnitude: Tensor?
    public var gradMagnitude: Tensor?
    /// DoRA: ‖W + scale·B·A‖ per output row as last computed, reused by
    /// forwards without saved state (inference) until `parametersChanged()`.
    var cachedWeightNorm: Tensor?
    /// DoRA: the frozen weight's squared row norms (W never changes).
    var baseRowSquaredNorms: [Double]?

    public init(a: Tensor, b: Tensor, scale: Float, dropout: Float = 0) {
        precondition(a.rows == b.rowSize, "LoRA: A \(a.shape) and B \(b.shape) disagree on the rank")
        self.a = a
        self.b = b
        self.scale = scale
        self.dropout = dropout
    }

    public var rank: Int { a.rows }

    /// A and B laid out for the decoding kernels (`PackedLoRA`: B in blocks
    /// of 16 outputs, both perhaps as IEEE half), which decoding rows read
    /// when set (`keepPacked`). Training never sets it (A and B change).
    public private(set) var packed: PackedLoRA?

    /// Lays A and B out for decoding reads, as half when `half` (inference
    /// only: the copy is not updated when A or B change).
    public func keepPacked(half: Bool) {
        guard a.device == .cpu, b.device == .cpu, a.dtype == .f32, b.dtype == .f32 else { return }
        packed = PackedLoRA(a: a, b: b, half: half)
    }

    /// This adapter on rows `rows` of a shared product (`CPUBackend.linearShared`).
    func onRows(_ rows: Range<Int>) -> CPUBackend.LowRankRows {
        CPUBackend.LowRankRows(rows: rows, a: a, b: b, packed: packed, scale: scale)
    }

    /// Up to this many rows without a backward, `forward` on the CPU updates
    /// each row alone (`CPUBackend.addLowRankUpdate`: decoding); more go
    /// through the two GEMMs.
    static let fusedRowsLimit = 16

    /// Call after A, B or the magnitude change outside a training forward
    /// (optimizer step, checkpoint restore): drops DoRA's cached weight norm.
    public func parametersChanged() { cachedWeightNorm = nil }

    /// What one forward keeps for the backward: the (dropped-out) input and
    /// scale·x·Aᵀ.
    public final class Saved {
        public var input: Tensor?
        public var scaledProjection: Tensor?
        public var dropoutMask: Tensor?
        /// The dropout draw for this call; the same seed replays the same mask.
        public var dropoutSeed: UInt64 = 0
        /// DoRA: W·x̃ + scale·B·A·x̃ (x̃ the dropped-out input), m/‖W + scale·B·A‖
        /// and 1/‖W + scale·B·A‖ per output row.
        public var doraCombined: Tensor?
        public var doraColumnScale: Tensor?
        public var doraInverseNorm: Tensor?
        public init() {}
    }

    /// y += scale · (x·Aᵀ)·Bᵀ. The scale is applied to the small [N, r]
    /// projection, so no [N, out] temporary is ever made.
    func forward(_ x: Tensor, into y: Tensor, backend bk: Backend, saved: Saved?) {
        let n = x.count / a.rowSize
        // Decoding (a few rows, nothing kept for a backward): each row's
        // update in one call instead of two GEMVs, a scratch tensor and a
        // scaling pass, ~420 of each per token of a fully adapted model.
        if saved == nil, n <= Self.fusedRowsLimit, let cpu = bk as? CPUBackend,
           cpu.addLowRankUpdate(x, a: a, b: b, packed: packed, scale: scale, into: y) {
            return
        }
        var input = x
        if dropout > 0, let saved {
            // Inverted dropout on the adapter's path only, as peft.LoraLayer does.
            let mask = saved.dropoutMask ?? bk.zeros([n, a.rowSize], dtype: .f32)
            bk.dropoutMask(mask, probability: dropout, seed: saved.dropoutSeed)
            let dropped = bk.zeros([n, a.rowSize], dtype: .f32)
            bk.multiply(x, mask, into: dropped)
            saved.dropoutMask = mask
            input = dropped
        }
        let projection = bk.zeros([n, rank], dtype: .f32)
        bk.linear(input, a, bias: nil, into: projection, accumulate: false)
        bk.scale(projection, by: scale)
        bk.linear(projection, b, bias: nil, into: y, accumulate: true)
        if let saved {
            saved.input = input
            saved.scaledProjection = projection
        }
    }

    /// dx += scale·dy·B·A: a frozen adapter's share of the input gradient (no weight gradients).
    func backwardInput(_ dy: Tensor, dx: Tensor, backend bk: Backend) {
        let dProjection = bk.zeros([dy.count / b.rows, rank], dtype: .f32)
        bk.linearBackwardInput(dy, b, into: dProjection, accumulate: false)
        bk.scale(dProjection, by: scale)
        bk.linearBackwardInput(dProjection, a, into: dx, accumulate: true)
    }

    func backward(_ dy: Tensor, saved: Saved, dx: Tensor, backend bk: Backend) {
        guard let input = saved.input, let projection = saved.scaledProjection else {
            preconditionFailure("LoRA backward without a saved forward")
        }
        let n = dy.count / b.rows
        let gB = gradB ?? bk.zeros(b.shape, dtype: .f32)
        let gA = gradA ?? bk.zeros(a.shape, dtype: .f32)
        gradB = gB
        gradA = gA
        // dB += dyᵀ·(scale·x·Aᵀ)
        bk.linearBackwardWeight(dy, projection, into: gB, accumulate: true)
        // dP = scale·dy·B;  dA += dPᵀ·x;  dx += dP·A (through the dropout mask)
        let dProjection = bk.zeros([n, rank], dtype: .f32)
        bk.linearBackwardInput(dy, b, into: dProjection, accumulate: false)
        bk.scale(dProjection, by: scale)
        bk.linearBackwardWeight(dProjection, input, into: gA, accumulate: true)
        if let mask = saved.dropoutMask {
            let dInput = bk.zeros([n, a.rowSize], dtype: .f32)
            bk.linearBackwardInput(dProjection, a, into: dInput, accumulate: false)
            bk.multiply(dInput, mask, into: dInput)
            bk.axpy(1, dInput, dx)
        } else {
            bk.linearBackwardInput(dProjection, a, into: dx, accumulate: true)
        }
    }
}
