import CLoftKernels
import Foundation

/// The CPU backend: GEMMs through BLAS (in `computePrecision`, see
/// `gemm`), everything else as plain f32 loops spread over the cores. It
/// serves every test and small models.
public final class CPUBackend: Backend, @unchecked Sendable {
    public static let shared = CPUBackend()
    /// Worker threads for everything the backend does, GEMMs included (BLAS
    /// itself runs single-threaded, see `BLAS`): `LOFT_THREADS`, else
    /// `OPENBLAS_NUM_THREADS` (as benchmarks and users already set it), else
    /// every core.
    nonisolated(unsafe) public static var threads: Int = {
        let env = ProcessInfo.processInfo.environment
        for key in ["LOFT_THREADS", "OPENBLAS_NUM_THREADS"] {
            if let n = env[key].flatMap({ Int($0) }), n > 0 { return n }
        }
        return max(1, ProcessInfo.processInfo.activeProcessorCount)
    }()

    public let name = "cpu"
    public let device = Device.cpu

    /// What the GEMMs round their inputs to (f32 accumulation whatever it is).
    public let computePrecision: ComputePrecision

    public init(computePrecision: ComputePrecision = .fp32) {
        self.computePrecision = computePrecision
    }

    // MARK: memory

    public func zeros(_ shape: [Int], dtype: DType = .f32) -> Tensor { Tensor.zeros(shape, dtype: dtype) }

    public func upload(_ values: [Float], shape: [Int]) -> Tensor { Tensor.cpu(values, shape: shape) }

    public func download(_ tensor: Tensor) -> [Float] { tensor.toArray() }

    public func copy(_ source: Tensor, into destination: Tensor) {
        precondition(source.byteCount == destination.byteCount && source.dtype == destination.dtype,
                     "copy of \(source.shape) \(source.dtype) into \(destination.shape) \(destination.dtype)")
        destination.rawPointer.copyMemory(from: source.rawPointer, byteCount: source.byteCount)
    }

    // MARK: linear layers

    public func linear(_ x: Tensor, _ w: Tensor, bias: Tensor?, into y: Tensor, accumulate: Bool) {
        let (n, k, m) = (x.count / x.shape.last!, x.shape.last!, w.shape[0])
        precondition(w.rowSize == k && y.count == n * m, "linear: x \(x.shape) · w \(w.shape)ᵀ into y \(y.shape)")
        var beta: Float = accumulate ? 1 : 0
        if let bias {
            precondition(bias.count == m, "linear: bias \(bias.shape) for \(m) outputs")
            let yp = y.floats, bp = bias.floats
            for r in 0 ..< n {
                let row = yp + r * m
                if accumulate { for j in 0 ..< m { row[j] += bp[j] } } else { row.update(from: bp, count: m) }
            }
            beta = 1
        }
        // A GEMM with a few rows would pack the whole weight matrix first; for
        // decoding (one token at a time) matrix-vector products are far cheaper.
        if n <= Self.gemvRows && computePrecision == .fp32 {
            for r in 0 ..< n {
                BLAS.sgemv(trans: false, rows: m, cols: k, alpha: 1, a: w.floats, lda: k,
                           x: x.floats + r * k, beta: beta, y: y.floats + r * m)
            }
            return
        }
        gemm(transA: false, transB: true, m: n, n: m, k: k, alpha: 1, a: x.floats, lda: k,
             b: w.floats, ldb: k, beta: beta, c: y.floats, ldc: m, precision: computePrecision)
    }

    /// Up to this many rows, `linear` runs one GEMV per row instead of a GEMM.
    static let gemvRows = 2

    public func linearBackwardInput(_ dy: Tensor, _ w: Tensor, into dx: Tensor, accumulate: Bool) {
        let (m, k) = (w.shape[0], w.rowSize)
        let n = dy.count / m
        precondition(dx.count == n * k, "linearBackwardInput: dy \(dy.shape) · w \(w.shape) into \(dx.shape)")
        gemm(transA: false, transB: false, m: n, n: k, k: m, alpha: 1, a: dy.floats, lda: m,
             b: w.floats, ldb: k, beta: accumulate ? 1 : 0, c: dx.floats, ldc: k, precision: computePrecision)
    }

    public func linearBackwardWeight(_ dy: Tensor, _ x: Tensor, into dw: Tensor, accumulate: Bool) {
        let (m, k) = (dw.shape[0], dw.rowSize)
        let n = x.count / k
        precondition(dy.count == n * m, "linearBackwardWeight: dy \(dy.shape)ᵀ · x \(x.shape) into \(dw.shape)")
        gemm(transA: true, transB: false, m: m, n: k, k: n, alpha: 1, a: dy.floats, lda: m,
             b: x.floats, ldb: k, beta: accumulate ? 1 : 0, c: dw.floats, ldc: k, precision: computePrecision)
    }

    // MARK: elementwise

    public func add(_ a: Tensor, _ b: Tensor, into y: Tensor) {
        precondition(a.count == b.count && a.count == y.count, "add: \(a.shape) + \(b.shape) into \(y.shape)")
        let (ap, bp, yp) = (a.floats, b.floats, y.floats)
        parallelChunks(y.count, minimumPerChunk: 1 << 15) { r in
            for i in r { yp[i] = ap[i] + bp[i] }
        }
    }

    public func axpy(_ alpha: Float, _ x: Tensor, _ y: Tensor) {
        precondition(x.count == y.count, "axpy: \(x.shape) into \(y.shape)")
        let (xp, yp) = (x.floats, y.floats)
        parallelChunks(y.count, minimumPerChunk: 1 << 15) { r in
            for i in r { yp[i] += alpha * xp[i] }
        }
    }

    public func scale(_ x: Tensor, by alpha: Float) {
        let xp = x.floats
        parallelChunks(x.count, minimumPerChunk: 1 << 15) { r in
            for i in r { xp[i] *= alpha }
        }
    }

    public func swiglu(gate: Tensor, up: Tensor, into out: Tensor) {
        precondition(gate.count == up.count && gate.count == out.count, "swiglu: \(gate.shape), \(up.shape) into \(out.shape)")
        let (g, u, o) = (gate.floats, up.floats, out.floats)
        parallelChunks(out.count, minimumPerChunk: 1 << 14) { r in
            loft_swiglu(g + r.lowerBound, u + r.lowerBound, o + r.lowerBound, r.count)
        }
    }

    public func swigluBackward(_ dOut: Tensor, gate: Tensor, up: Tensor, dGate: Tensor, dUp: Tensor) {
        let (d, g, u, dg, du) = (dOut.floats, gate.floats, up.floats, dGate.floats, dUp.floats)
        parallelChunks(dOut.count, minimumPerChunk: 1 << 14) { r in
            let i = r.lowerBound
            loft_swiglu_backward(d + i, g + i, u + i, dg + i, du + i, r.count)
        }
    }

    // MARK: embedding

    public func embedding(ids: [Int32], table: Tensor, into out: Tensor) {
        let d = table.rowSize
        precondition(out.count == ids.count * d, "embedding: \(ids.count) ids × \(d) into \(out.shape)")
        let (t, o) = (table.floats, out.floats)
        for (i, id) in ids.enumerated() {
            precondition(id >= 0 && Int(id) < table.rows, "token id \(id) outside the vocabulary of \(table.rows)")
            (o + i * d).update(from: t + Int(id) * d, count: d)
        }
    }

    public func embeddingBackward(ids: [Int32], dOut: Tensor, dTable: Tensor) {
        let d = dTable.rowSize
        let (g, dt) = (dOut.floats, dTable.floats)
        for (i, id) in ids.enumerated() {
            let src = g + i * d, dst = dt + Int(id) * d
            for j in 0 ..< d { dst[j] += src[j] }
        }
    }

    // MARK: optimiser

    public func adamW(param: Tensor, grad: Tensor, m: Tensor, v: Tensor, hyper h: AdamWHyper) {
        let (p, g, mp, vp) = (param.floats, grad.floats, m.floats, v.floats)
        // PyTorch's AdamW, term for term: decay first, then the bias-corrected step.
        let decay = 1 - h.lr * h.weightDecay
        let bc1 = 1 - Foundation.pow(h.beta1, Float(h.step))
        let bc2Sqrt = (1 - Foundation.pow(h.beta2, Float(h.step))).squareRoot()
        let stepSize = h.lr / bc1
        let (b1, b2, eps) = (h.beta1, h.beta2, h.eps)
        parallelChunks(param.count, minimumPerChunk: 1 << 14) { r in
            for i in r {
                let gi = g[i]
                p[i] *= decay
                mp[i] = b1 * mp[i] + (1 - b1) * gi
                vp[i] = b2 * vp[i] + (1 - b2) * gi * gi
                let denom = vp[i].squareRoot() / bc2Sqrt + eps
                p[i] -= stepSize * mp[i] / denom
            }
        }
    }

    public func sumOfSquares(_ x: Tensor) -> Double {
        let p = x.floats
        var total = 0.0
        for i in 0 ..< x.count { total += Double(p[i]) * Double(p[i]) }
        return total
    }
}

extension CPUBackend {
    /// One low-rank update of `addLowRankUpdates`: y[n, m] += scale · (x[n, k]
    /// · Aᵀ) · Bᵀ with A [r, k] and B [m, r], reading `halves` (A's and B's
    /// values as IEEE half bits) instead of A and B when given.
    public struct LowRankUpdate {
        public let x: Tensor, a: Tensor, b: Tensor
        public let halves: HalfWeights?
        public let scale: Float
        public let y: Tensor

        public init(x: Tensor, a: Tensor, b: Tensor, halves: HalfWeights? = nil, scale: Float, y: Tensor) {
            self.x = x; self.a = a; self.b = b; self.halves = halves; self.scale = scale; self.y = y
        }
    }

    /// Multiply-adds (Σ n · r · (k + m)) from which `addLowRankUpdates` splits over the cores.
    nonisolated(unsafe) static var lowRankSplitMinimum = 1 << 17

    /// `addLowRankUpdates` for one update.
    public func addLowRankUpdate(_ x: Tensor, a: Tensor, b: Tensor, halves: HalfWeights? = nil, scale: Float,
                                 into y: Tensor) -> Bool {
        addLowRankUpdates([LowRankUpdate(x: x, a: a, b: b, halves: halves, scale: scale, y: y)])
    }

    /// LoRA updates for the rows of decoding (each update its own adapter and
    /// rows, as a step of the batched engine has them), every row computed
    /// alone through `loft_lora_down`/`loft_lora_up` (16-lane sums reduced in
    /// a fixed tree): a row's numbers never depend on which rows share the
    /// call. Large calls run as two jobs over the cores, all updates' A rows,
    /// then all their B rows, so eight adapters of two rows each cost what
    /// one adapter of sixteen rows does. Returns false, having done nothing,
    /// unless everything is f32 and the backend computes in fp32.
    public func addLowRankUpdates(_ updates: [LowRankUpdate]) -> Bool {
        guard computePrecision == .fp32, updates.allSatisfy({
            $0.x.dtype == .f32 && $0.a.dtype == .f32 && $0.b.dtype == .f32 && $0.y.dtype == .f32
        }) else { return false }
        struct Shape { let n: Int, k: Int, r: Int, m: Int, t: Int }   // t: offset of its rows' A·x
        var shapes: [Shape] = []
        var scratch = 0, work = 0
        for u in updates {
            let (k, r, m) = (u.a.rowSize, u.a.rows, u.b.rows)
            precondition(u.b.rowSize == r && u.x.count % k == 0 && u.y.count == u.x.count / k * m,
                         "addLowRankUpdate: x \(u.x.shape), A \(u.a.shape), B \(u.b.shape), y \(u.y.shape)")
            precondition(u.halves.map { $0.a.count == u.a.count && $0.b.count == u.b.count } ?? true,
                         "addLowRankUpdate: halves of other shapes")
            let n = u.x.count / k
            shapes.append(Shape(n: n, k: k, r: r, m: m, t: scratch))
            scratch += n * r
            work += n * r * (k + m)
        }
        let t = UnsafeMutablePointer<Float>.allocate(capacity: max(scratch, 1))
        defer { t.deallocate() }
        // Pieces: (update, first row of A or B, count).
        func down(_ i: Int, _ rows: Range<Int>) {
            let (u, s) = (updates[i], shapes[i])
            for row in 0 ..< s.n {
                let (xr, tr) = (u.x.floats + row * s.k, t + s.t + row * s.r + rows.lowerBound)
                if let h = u.halves { loft_lora_down_f16(xr, s.k, h.a.baseAddress! + rows.lowerBound * s.k, rows.count, u.scale, tr) }
                else { loft_lora_down(xr, s.k, u.a.floats + rows.lowerBound * s.k, rows.count, u.scale, tr) }
            }
        }
        func up(_ i: Int, _ outs: Range<Int>) {
            let (u, s) = (updates[i], shapes[i])
            for row in 0 ..< s.n {
                let (tr, yr) = (t + s.t + row * s.r, u.y.floats + row * s.m + outs.lowerBound)
                if let h = u.halves { loft_lora_up_f16(tr, s.r, h.b.baseAddress! + outs.lowerBound * s.r, outs.count, yr) }
                else { loft_lora_up(tr, s.r, u.b.floats + outs.lowerBound * s.r, outs.count, yr) }
            }
        }
        if work < Self.lowRankSplitMinimum || CPUBackend.threads < 2 {
            for i in updates.indices { down(i, 0 ..< shapes[i].r) }
            for i in updates.indices { up(i, 0 ..< shapes[i].m) }
            return true
        }
        func pieces(_ size: (Shape) -> Int, _ per: Int) -> [(Int, Range<Int>)] {
            var out: [(Int, Range<Int>)] = []
            for (i, s) in shapes.enumerated() {
                var lo = 0
                while lo < size(s) { out.append((i, lo ..< min(lo + per, size(s)))); lo += per }
            }
            return out
        }
        let downs = pieces({ $0.r }, 8), ups = pieces({ $0.m }, 64)
        teamRun(downs.count, threads: CPUBackend.threads) { down(downs[$0].0, downs[$0].1) }
        teamRun(ups.count, threads: CPUBackend.threads) { up(ups[$0].0, ups[$0].1) }
        return true
    }
}

/// A LoRA's A and B rounded to IEEE half (round to nearest even), for
/// decoding reads: `loft serve` keeps its adapters so by default.
public final class HalfWeights: @unchecked Sendable {
    public let a: UnsafeMutableBufferPointer<UInt16>
    public let b: UnsafeMutableBufferPointer<UInt16>

    public init(a: Tensor, b: Tensor) {
        func halves(_ t: Tensor) -> UnsafeMutableBufferPointer<UInt16> {
            let values = t.toArray()
            let out = UnsafeMutableBufferPointer<UInt16>.allocate(capacity: values.count)
            for (i, v) in values.enumerated() { out[i] = Float16(v).bitPattern }
            return out
        }
        self.a = halves(a)
        self.b = halves(b)
    }

    deinit {
        a.deallocate()
        b.deallocate()
    }
}
