import Foundation

/// A backend that forwards every operation to another one and times it, by
/// operation and shape: where a training step's time goes (`loft bench
/// --profile`). Operations are synchronous on the CPU backend, so each call's
/// wall time is its cost; a GPU backend would need a device sync per call,
/// which this does not do.
public final class ProfilingBackend: Backend, @unchecked Sendable {   // `lock` guards `entries`
    public let inner: Backend

    /// One row of the profile: an operation on one shape.
    public struct Entry: Sendable {
        public var operation: String
        public var shape: String
        public var calls = 0
        public var seconds = 0.0
        /// Floating-point operations of all calls (GEMMs, attention), 0 where not counted.
        public var flops = 0.0
        public var gflops: Double? { flops > 0 && seconds > 0 ? flops / seconds / 1e9 : nil }
    }

    private var entries: [String: Entry] = [:]
    private let lock = NSLock()

    public init(_ inner: Backend) { self.inner = inner }

    public var name: String { inner.name + "+profile" }
    public var device: Device { inner.device }

    /// Everything recorded so far, longest total time first.
    public func report() -> [Entry] {
        lock.lock(); defer { lock.unlock() }
        return entries.values.sorted { $0.seconds != $1.seconds ? $0.seconds > $1.seconds : $0.operation < $1.operation }
    }

    public func reset() { lock.lock(); entries = [:]; lock.unlock() }

    @inline(__always)
    private func timed<T>(_ operation: String, _ shape: @autoclosure () -> String, flops: Double = 0, _ body: () -> T) -> T {
        let start = DispatchTime.now().uptimeNanoseconds
        let result = body()
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        let s = shape()
        let key = operation + " " + s
        lock.lock()
        var e = entries[key] ?? Entry(operation: operation, shape: s)
        e.calls += 1
        e.seconds += seconds
        e.flops += flops
        entries[key] = e
        lock.unlock()
        return result
    }

    private static func dims(_ t: Tensor) -> String { t.shape.map(String.init).joined(separator: "x") }

    // MARK: memory (not timed: allocation and transfers are not compute)
    public func zeros(_ shape: [Int], dtype: DType) -> Tensor { inner.zeros(shape, dtype: dtype) }
    public func upload(_ values: [Float], shape: [Int]) -> Tensor { inner.upload(values, shape: shape) }
    public func download(_ tensor: Tensor) -> [Float] { inner.download(tensor) }
    public func copy(_ source: Tensor, into destination: Tensor) {
        timed("copy", Self.dims(source)) { inner.copy(source, into: destination) }
    }
    public func gatherRows(_ source: Tensor, rows: [Int32], scales: [Float]?, into destination: Tensor) {
        timed("gather rows", "\(rows.count)x\(source.rowSize)") { inner.gatherRows(source, rows: rows, scales: scales, into: destination) }
    }
    public func scatterAddRows(_ source: Tensor, rows: [Int32], scales: [Float]?, into destination: Tensor) {
        timed("scatter-add rows", "\(rows.count)x\(source.rowSize)") { inner.scatterAddRows(source, rows: rows, scales: scales, into: destination) }
    }
    public func copyColumns(_ source: Tensor, from: Int, into destination: Tensor, at: Int, count: Int) {
        timed("copy columns", "\(source.rows)x\(count)") { inner.copyColumns(source, from: from, into: destination, at: at, count: count) }
    }

    // MARK: linear layers: "N·K → M" with 2·N·K·M flops
    private static func gemm(_ n: Int, _ k: Int, _ m: Int) -> (String, Double) { ("\(n)x\(k) → \(m)", 2 * Double(n) * Double(k) * Double(m)) }

    public func linear(_ x: Tensor, _ w: Tensor, bias: Tensor?, into y: Tensor, accumulate: Bool) {
        let (s, f) = Self.gemm(x.rows, w.shape[1], w.shape[0])
        timed("linear", s, flops: f) { inner.linear(x, w, bias: bias, into: y, accumulate: accumulate) }
    }
    public func linearBackwardInput(_ dy: Tensor, _ w: Tensor, into dx: Tensor, accumulate: Bool) {
        let (s, f) = Self.gemm(dy.rows, w.shape[0], w.shape[1])
        timed("linear backward dx", s, flops: f) { inner.linearBackwardInput(dy, w, into: dx, accumulate: accumulate) }
    }
    public func linearBackwardWeight(_ dy: Tensor, _ x: Tensor, into dw: Tensor, accumulate: Bool) {
        let (s, f) = Self.gemm(dy.rows, x.shape.last ?? 1, dy.shape.last ?? 1)
        timed("linear backward dW", s, flops: f) { inner.linearBackwardWeight(dy, x, into: dw, accumulate: accumulate) }
    }
    public func linear(_ x: Tensor, frozen w: FrozenMatrix, bias: Tensor?, into y: Tensor, accumulate: Bool) {
        let (s, f) = Self.gemm(x.rows, w.cols, w.rows)
        timed("linear (compact base)", s, flops: f) { inner.linear(x, frozen: w, bias: bias, into: y, accumulate: accumulate) }
    }
    public func linearBackwardInput(_ dy: Tensor, frozen w: FrozenMatrix, into dx: Tensor, accumulate: Bool) {
        let (s, f) = Self.gemm(dy.rows, w.rows, w.cols)
        timed("linear backward dx (compact base)", s, flops: f) { inner.linearBackwardInput(dy, frozen: w, into: dx, accumulate: accumulate) }
    }

    // MARK: normalisation, rotary
    public func rmsNorm(_ x: Tensor, weight: Tensor, eps: Float, weightOffset: Float, into y: Tensor, rstd: Tensor?) {
        timed("rmsNorm", Self.dims(x)) { inner.rmsNorm(x, weight: weight, eps: eps, weightOffset: weightOffset, into: y, rstd: rstd) }
    }
    public func rmsNormBackward(_ dy: Tensor, x: Tensor, weight: Tensor, weightOffset: Float, rstd: Tensor,
                                dx: Tensor, accumulate: Bool, dweight: Tensor?) {
        timed("rmsNorm backward", Self.dims(x)) {
            inner.rmsNormBackward(dy, x: x, weight: weight, weightOffset: weightOffset, rstd: rstd, dx: dx, accumulate: accumulate, dweight: dweight)
        }
    }
    public func rope(_ x: Tensor, heads: Int, headDim: Int, positions: [Int32], invFreq: [Float], attentionScale: Float, inverse: Bool) {
        timed(inverse ? "rope backward" : "rope", Self.dims(x)) {
            inner.rope(x, heads: heads, headDim: headDim, positions: positions, invFreq: invFreq, attentionScale: attentionScale, inverse: inverse)
        }
    }

    // MARK: attention: flops of the causal QKᵀ and PV products (half the square per segment)
    private static func attentionFlops(_ q: Tensor, _ k: Tensor, _ spec: AttentionSpec) -> Double {
        let nq = q.rows, nk = k.rows
        var pairs = 0.0
        if nq == nk && spec.queryOffset == 0 {   // packed causal: each segment's triangle
            var bounds = spec.segments + [nk]
            bounds = bounds.filter { $0 <= nk }
            for j in 0 ..< bounds.count - 1 { let l = Double(bounds[j + 1] - bounds[j]); pairs += l * (l + 1) / 2 }
        } else {
            pairs = Double(nq) * Double(nk)
        }
        return 4 * pairs * Double(spec.heads * spec.headDim)
    }
    public func attention(q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor?, spec: AttentionSpec) {
        timed("attention", "\(q.rows) q × \(k.rows) k, \(spec.heads)/\(spec.kvHeads) heads of \(spec.headDim)", flops: Self.attentionFlops(q, k, spec)) {
            inner.attention(q: q, k: k, v: v, out: out, lse: lse, spec: spec)
        }
    }
    public func attentionBackward(dOut: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor,
                                  dq: Tensor, dk: Tensor, dv: Tensor, spec: AttentionSpec) {
        // The backward recomputes the scores and forms four products: 2.5× the forward's.
        timed("attention backward", "\(q.rows) q × \(k.rows) k, \(spec.heads)/\(spec.kvHeads) heads of \(spec.headDim)",
              flops: 2.5 * Self.attentionFlops(q, k, spec)) {
            inner.attentionBackward(dOut: dOut, q: q, k: k, v: v, out: out, lse: lse, dq: dq, dk: dk, dv: dv, spec: spec)
        }
    }

    // MARK: elementwise
    public func swiglu(gate: Tensor, up: Tensor, into out: Tensor) {
        timed("swiglu", Self.dims(gate)) { inner.swiglu(gate: gate, up: up, into: out) }
    }
    public func swigluBackward(_ dOut: Tensor, gate: Tensor, up: Tensor, dGate: Tensor, dUp: Tensor) {
        timed("swiglu backward", Self.dims(gate)) { inner.swigluBackward(dOut, gate: gate, up: up, dGate: dGate, dUp: dUp) }
    }
    public func softcap(_ x: Tensor, cap: Float) { timed("softcap", Self.dims(x)) { inner.softcap(x, cap: cap) } }
    public func softcapBackward(_ dy: Tensor, capped: Tensor, cap: Float) {
        timed("softcap backward", Self.dims(dy)) { inner.softcapBackward(dy, capped: capped, cap: cap) }
    }
    public func geglu(gate: Tensor, up: Tensor, into out: Tensor) {
        timed("geglu", Self.dims(gate)) { inner.geglu(gate: gate, up: up, into: out) }
    }
    public func gegluBackward(_ dOut: Tensor, gate: Tensor, up: Tensor, dGate: Tensor, dUp: Tensor) {
        timed("geglu backward", Self.dims(gate)) { inner.gegluBackward(dOut, gate: gate, up: up, dGate: dGate, dUp: dUp) }
    }
    public func add(_ a: Tensor, _ b: Tensor, into y: Tensor) { timed("add", Self.dims(a)) { inner.add(a, b, into: y) } }
    public func axpy(_ alpha: Float, _ x: Tensor, _ y: Tensor) { timed("axpy", Self.dims(x)) { inner.axpy(alpha, x, y) } }
    public func scale(_ x: Tensor, by alpha: Float) { timed("scale", Self.dims(x)) { inner.scale(x, by: alpha) } }

    // MARK: embedding, loss, optimizer
    public func embedding(ids: [Int32], table: Tensor, into out: Tensor) {
        timed("embedding", Self.dims(out)) { inner.embedding(ids: ids, table: table, into: out) }
    }
    public func embeddingBackward(ids: [Int32], dOut: Tensor, dTable: Tensor) {
        timed("embedding backward", Self.dims(dOut)) { inner.embeddingBackward(ids: ids, dOut: dOut, dTable: dTable) }
    }
    public func crossEntropy(logits: Tensor, labels: [Int32], dLogits: Tensor?, gradScale: Float) -> Double {
        timed("cross-entropy", Self.dims(logits)) { inner.crossEntropy(logits: logits, labels: labels, dLogits: dLogits, gradScale: gradScale) }
    }
    public func adamW(param: Tensor, grad: Tensor, m: Tensor, v: Tensor, hyper: AdamWHyper) {
        timed("adamW", "all adapter tensors") { inner.adamW(param: param, grad: grad, m: m, v: v, hyper: hyper) }
    }
    public func sumOfSquares(_ x: Tensor) -> Double { timed("sum of squares", "all adapter tensors") { inner.sumOfSquares(x) } }
    public func adamW8bit(param: Tensor, grad: Tensor, m: BlockwiseQuantizedVector, v: BlockwiseQuantizedVector, hyper: AdamWHyper) {
        timed("adamW 8-bit", "all adapter tensors") { inner.adamW8bit(param: param, grad: grad, m: m, v: v, hyper: hyper) }
    }

    // MARK: dropout, DoRA columns
    public func dropoutMask(_ mask: Tensor, probability: Float, seed: UInt64) {
        timed("dropout mask", Self.dims(mask)) { inner.dropoutMask(mask, probability: probability, seed: seed) }
    }
    public func multiply(_ a: Tensor, _ b: Tensor, into y: Tensor) { timed("multiply", Self.dims(a)) { inner.multiply(a, b, into: y) } }
    public func scaleColumns(_ x: Tensor, by scales: Tensor, into y: Tensor, accumulate: Bool) {
        timed("scale columns", Self.dims(x)) { inner.scaleColumns(x, by: scales, into: y, accumulate: accumulate) }
    }
    public func columnDots(_ a: Tensor, _ b: Tensor, into out: Tensor, accumulate: Bool) {
        timed("column dots", Self.dims(a)) { inner.columnDots(a, b, into: out, accumulate: accumulate) }
    }
}
