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

    public func copyColumns(_ source: Tensor, from: Int, into destination: Tensor, at: Int, count: Int) {
        let (n, sw, dw) = (source.rows, source.rowSize, destination.rowSize)
        precondition(source.dtype == .f32 && destination.dtype == .f32 && destination.rows == n
                     && from >= 0 && at >= 0 && count >= 0 && from + count <= sw && at + count <= dw,
                     "copyColumns: \(count) columns from \(from) of \(source.shape) into \(at) of \(destination.shape)")
        let (sp, dp) = (source.floats, destination.floats)
        for r in 0 ..< n { (dp + r * dw + at).update(from: sp + r * sw + from, count: count) }
    }

    public func gatherRows(_ source: Tensor, rows: [Int32], scales: [Float]?, into destination: Tensor) {
        let w = source.rowSize
        precondition(destination.rowSize == w && destination.rows == rows.count && (scales?.count ?? rows.count) == rows.count
                     && rows.allSatisfy { $0 >= 0 && Int($0) < source.rows },
                     "gatherRows: \(rows.count) rows of \(source.shape) into \(destination.shape)")
        let (sp, dp) = (source.floats, destination.floats)
        for (i, r) in rows.enumerated() {
            let (src, dst) = (sp + Int(r) * w, dp + i * w)
            if let scales { for j in 0 ..< w { dst[j] = scales[i] * src[j] } } else { dst.update(from: src, count: w) }
        }
    }

    public func scatterAddRows(_ source: Tensor, rows: [Int32], scales: [Float]?, into destination: Tensor) {
        let w = source.rowSize
        precondition(destination.rowSize == w && source.rows == rows.count && (scales?.count ?? rows.count) == rows.count
                     && rows.allSatisfy { $0 >= 0 && Int($0) < destination.rows },
                     "scatterAddRows: \(source.shape) into \(rows.count) rows of \(destination.shape)")
        let (sp, dp) = (source.floats, destination.floats)
        for (i, r) in rows.enumerated() {
            let (src, dst) = (sp + i * w, dp + Int(r) * w)
            if let scales { for j in 0 ..< w { dst[j] += scales[i] * src[j] } } else { for j in 0 ..< w { dst[j] += src[j] } }
        }
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

    public func swiglu(gate: Tensor, up: Tensor, into out: Tensor) { gated(loft_swiglu, "swiglu", gate, up, out) }
    public func swigluBackward(_ dOut: Tensor, gate: Tensor, up: Tensor, dGate: Tensor, dUp: Tensor) {
        gatedBackward(loft_swiglu_backward, dOut, gate, up, dGate, dUp)
    }
    public func geglu(gate: Tensor, up: Tensor, into out: Tensor) { gated(loft_geglu, "geglu", gate, up, out) }
    public func gegluBackward(_ dOut: Tensor, gate: Tensor, up: Tensor, dGate: Tensor, dUp: Tensor) {
        gatedBackward(loft_geglu_backward, dOut, gate, up, dGate, dUp)
    }

    public func softcap(_ x: Tensor, cap: Float) {
        let p = x.floats, inverse = 1 / cap
        parallelChunks(x.count, minimumPerChunk: 1 << 14) { r in
            for i in r { p[i] = cap * tanh(p[i] * inverse) }
        }
    }

    public func softcapBackward(_ dy: Tensor, capped: Tensor, cap: Float) {
        precondition(dy.count == capped.count, "softcapBackward: \(dy.shape) and \(capped.shape)")
        let (d, c) = (dy.floats, capped.floats)
        let inverse = 1 / cap
        parallelChunks(dy.count, minimumPerChunk: 1 << 14) { r in
            for i in r { let u = c[i] * inverse; d[i] *= 1 - u * u }
        }
    }

    /// out = act(gate) · up with one of the C kernels, split over the cores.
    private func gated(_ kernel: (UnsafePointer<Float>?, UnsafePointer<Float>?, UnsafeMutablePointer<Float>?, Int) -> Void,
                       _ name: String, _ gate: Tensor, _ up: Tensor, _ out: Tensor) {
        precondition(gate.count == up.count && gate.count == out.count, "\(name): \(gate.shape), \(up.shape) into \(out.shape)")
        let (g, u, o) = (gate.floats, up.floats, out.floats)
        parallelChunks(out.count, minimumPerChunk: 1 << 14) { r in
            kernel(g + r.lowerBound, u + r.lowerBound, o + r.lowerBound, r.count)
        }
    }

    private func gatedBackward(_ kernel: (UnsafePointer<Float>?, UnsafePointer<Float>?, UnsafePointer<Float>?,
                                          UnsafeMutablePointer<Float>?, UnsafeMutablePointer<Float>?, Int) -> Void,
                               _ dOut: Tensor, _ gate: Tensor, _ up: Tensor, _ dGate: Tensor, _ dUp: Tensor) {
        let (d, g, u, dg, du) = (dOut.floats, gate.floats, up.floats, dGate.floats, dUp.floats)
        parallelChunks(dOut.count, minimumPerChunk: 1 << 14) { r in
            let i = r.lowerBound
            kernel(d + i, g + i, u + i, dg + i, du + i, r.count)
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
    /// · Aᵀ) · Bᵀ with A [r, k] and B [m, r], reading `packed` (the same
    /// weights laid out for the kernels, perhaps as half) when given; without
    /// it B is packed for the call.
    public struct LowRankUpdate {
        public let x: Tensor, a: Tensor, b: Tensor
        public let packed: PackedLoRA?
        public let scale: Float
        public let y: Tensor

        public init(x: Tensor, a: Tensor, b: Tensor, packed: PackedLoRA? = nil, scale: Float, y: Tensor) {
            self.x = x; self.a = a; self.b = b; self.packed = packed; self.scale = scale; self.y = y
        }
    }

    /// Multiply-adds of one half (Σ n · r · k for the A rows, Σ n · r · m for
    /// the B rows) from which that half of low-rank updates splits over the cores.
    nonisolated(unsafe) static var lowRankSplitMinimum = 1 << 16

    /// `addLowRankUpdates` for one update.
    public func addLowRankUpdate(_ x: Tensor, a: Tensor, b: Tensor, packed: PackedLoRA? = nil, scale: Float,
                                 into y: Tensor) -> Bool {
        addLowRankUpdates([LowRankUpdate(x: x, a: a, b: b, packed: packed, scale: scale, y: y)])
    }

    /// LoRA updates for the rows of decoding (each update its own adapter and
    /// rows, as a step of the batched engine has them), every row computed
    /// alone through `loft_lora_down`/`loft_lora_up`: a row's numbers never
    /// depend on which rows share the call. Large calls run as two jobs over
    /// the cores, all updates' A rows, then all their B rows, so eight
    /// adapters of two rows each cost what one adapter of sixteen rows does.
    /// Returns false, having done nothing, unless everything is f32 and the
    /// backend computes in fp32.
    public func addLowRankUpdates(_ updates: [LowRankUpdate]) -> Bool {
        guard computePrecision == .fp32, updates.allSatisfy({
            $0.x.dtype == .f32 && $0.a.dtype == .f32 && $0.b.dtype == .f32 && $0.y.dtype == .f32
        }) else { return false }
        for u in updates {
            precondition(u.b.rowSize == u.a.rows && u.x.count % u.a.rowSize == 0 && u.y.count == u.x.count / u.a.rowSize * u.b.rows,
                         "addLowRankUpdate: x \(u.x.shape), A \(u.a.shape), B \(u.b.shape), y \(u.y.shape)")
        }
        let packs = updates.map { $0.packed ?? PackedLoRA(a: $0.a, b: $0.b, half: false) }
        defer { withExtendedLifetime(packs) {} }   // the downs and ups hold raw pointers into them
        let downs = updates.indices.map { LowRankDown(x: updates[$0].x.floats, n: updates[$0].x.count / updates[$0].a.rowSize,
                                                      a: updates[$0].a, packed: packs[$0], scale: updates[$0].scale) }
        let (t, offsets) = lowRankDown(downs)
        defer { t.deallocate() }
        let ups = updates.indices.map { QuantizedDecoding.LowRankUp(first: 0, count: downs[$0].n, t: t + offsets[$0], packed: packs[$0]) }
        func up(_ i: Int, _ outs: Range<Int>) {
            for row in 0 ..< ups[i].count {
                ups[i].add(row: row, from: outs.lowerBound, count: outs.count, outputs: updates[i].b.rows, y: updates[i].y.floats)
            }
        }
        let work = updates.indices.reduce(0) { $0 + downs[$1].n * updates[$1].a.rows * updates[$1].b.rows }
        if work < Self.lowRankSplitMinimum || CPUBackend.threads < 2 {
            for i in updates.indices { up(i, 0 ..< updates[i].b.rows) }
            return true
        }
        var pieces: [(Int, Range<Int>)] = []
        for (i, u) in updates.enumerated() { for lo in stride(from: 0, to: u.b.rows, by: 64) { pieces.append((i, lo ..< min(lo + 64, u.b.rows))) } }
        teamRun(pieces.count, threads: CPUBackend.threads) { up(pieces[$0].0, pieces[$0].1) }
        return true
    }

    /// The first half of a LoRA update for n rows of x: t = scale · A · x.
    /// Raw pointers only: its pieces run many times a token, where every
    /// class reference read would cost a retain and a release.
    struct LowRankDown {
        let x: UnsafePointer<Float>, n: Int, k: Int, r: Int
        let a: UnsafePointer<Float>?, aHalf: UnsafePointer<UInt16>?
        let scale: Float

        /// `a` and `packed` must outlive the pieces' runs.
        init(x: UnsafePointer<Float>, n: Int, a: Tensor, packed: PackedLoRA, scale: Float) {
            (self.x, self.n, k, r, self.scale) = (x, n, a.rowSize, a.rows, scale)
            if let h = packed.aHalf { (self.a, aHalf) = (nil, UnsafePointer(h)) } else { (self.a, aHalf) = (UnsafePointer(a.floats), nil) }
        }
    }

    /// t = scale · A · x for every row of every item, each row alone
    /// (`loft_lora_down`), into one buffer (the caller deallocates it) at the
    /// returned offsets (n · r floats an item): one job over the cores, by
    /// eight rows of A, when there is enough work.
    func lowRankDown(_ items: [LowRankDown]) -> (t: UnsafeMutablePointer<Float>, offsets: [Int]) {
        let downs = LowRankDowns(items)
        if downs.work < Self.lowRankSplitMinimum || CPUBackend.threads < 2 {
            for i in downs.pieces.indices { downs.run(i) }
        } else {
            teamRun(downs.pieces.count, threads: CPUBackend.threads) { downs.run($0) }
        }
        return (downs.t, downs.offsets)
    }
}

/// The first halves of LoRA updates (`CPUBackend.LowRankDown`) as pieces of
/// eight rows of A, and the buffer their t goes to (`t`, deallocated by the
/// owner; item i's rows at `offsets[i]`, n · r floats).
struct LowRankDowns {
    let items: [CPUBackend.LowRankDown]
    let t: UnsafeMutablePointer<Float>
    let offsets: [Int]
    let pieces: [(item: Int, rows: Range<Int>)]
    /// Multiply-adds, Σ n · r · k.
    let work: Int

    init(_ items: [CPUBackend.LowRankDown]) {
        var offsets: [Int] = [], total = 0, work = 0
        var pieces: [(item: Int, rows: Range<Int>)] = []
        for (i, d) in items.enumerated() {
            offsets.append(total)
            total += d.n * d.r
            work += d.n * d.r * d.k
            for lo in stride(from: 0, to: d.r, by: 8) { pieces.append((i, lo ..< min(lo + 8, d.r))) }
        }
        self.items = items; self.offsets = offsets; self.pieces = pieces; self.work = work
        t = UnsafeMutablePointer<Float>.allocate(capacity: max(total, 1))
    }

    /// Every item's A: what the pieces read.
    var regions: [(UnsafeRawPointer, Int)] {
        items.map { d in
            d.aHalf.map { (UnsafeRawPointer($0), d.r * d.k * 2) } ?? (UnsafeRawPointer(d.a!), d.r * d.k * 4)
        }
    }

    /// Piece `p`: its rows of A times every row of its item's x.
    func run(_ p: Int) {
        let (i, rows) = pieces[p]
        let d = items[i]
        for row in 0 ..< d.n {
            let (xr, tr) = (d.x + row * d.k, t + offsets[i] + row * d.r + rows.lowerBound)
            if let h = d.aHalf { loft_lora_down_f16(xr, d.k, h + rows.lowerBound * d.k, rows.count, d.scale, tr) }
            else { loft_lora_down(xr, d.k, d.a! + rows.lowerBound * d.k, rows.count, d.scale, tr) }
        }
    }
}

/// A LoRA's weights as the decoding kernels read them: A as it is (f32) or
/// rounded to IEEE half (round to nearest even), and B packed in blocks of
/// 16 outputs (`loft_lora_pack`: the up pass then reads straight through with
/// no horizontal sums), f32 or half. Made once when an adapter is loaded for
/// generation (`LoRA.keepPacked`); `loft serve --adapter-precision f16` keeps
/// the half copies: half the bytes a decode step reads for each adapter.
public final class PackedLoRA: @unchecked Sendable {
    public let half: Bool
    public let rank: Int
    /// A [r, k] as half bits (nil for f32: the kernels read the tensor).
    let aHalf: UnsafeMutablePointer<UInt16>?
    /// B packed: `loft_lora_packed_count(m, r)` floats or halves.
    let b: UnsafeMutableRawPointer

    public init(a: Tensor, b: Tensor, half: Bool) {
        precondition(a.rows == b.rowSize, "PackedLoRA: A \(a.shape) and B \(b.shape) disagree on the rank")
        self.half = half
        rank = a.rows
        let count = loft_lora_packed_count(b.rows, a.rows)
        let bValues = b.toArray()
        if half {
            let values = a.toArray()
            let ah = UnsafeMutablePointer<UInt16>.allocate(capacity: max(values.count, 1))
            for (i, v) in values.enumerated() { ah[i] = Float16(v).bitPattern }
            aHalf = ah
            let packed = UnsafeMutablePointer<UInt16>.allocate(capacity: max(count, 1))
            loft_lora_pack_f16(bValues, b.rows, a.rows, packed)
            self.b = UnsafeMutableRawPointer(packed)
        } else {
            aHalf = nil
            let packed = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1))
            loft_lora_pack(bValues, b.rows, a.rows, packed)
            self.b = UnsafeMutableRawPointer(packed)
        }
    }

    deinit {
        aHalf?.deallocate()
        b.deallocate()
    }
}
