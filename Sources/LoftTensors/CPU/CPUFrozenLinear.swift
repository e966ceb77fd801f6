/// Linear layers over weights that stay compact (`FrozenMatrix`): each tile of
/// `frozenTileRows` output rows is dequantized into a scratch buffer and
/// multiplied there with BLAS (strided into y or from dy), so memory holds
/// one tile of f32 weights at a time, not the matrix.
extension CPUBackend {
    /// Output rows dequantized per GEMM: large enough that BLAS runs near its
    /// speed, small enough that the scratch stays in the L2/L3 cache.
    nonisolated(unsafe) static var frozenTileRows = 128

    /// Dequantizes rows m0..<m0+count into scratch, spread over the cores.
    private func dequantizeTile(_ w: FrozenMatrix, _ m0: Int, _ count: Int, into scratch: UnsafeMutablePointer<Float>) {
        let k = w.cols
        parallelChunks(count, minimumPerChunk: max(1, 4096 / max(k, 1))) { r in
            w.dequantizeRows(m0 + r.lowerBound ..< m0 + r.upperBound, into: scratch + r.lowerBound * k)
        }
    }

    /// A LoRA adapter on rows `rows` of a shared product's x and y
    /// (`linearShared`'s `lowRank`): y += scale · (x · Aᵀ) · Bᵀ, reading
    /// `packed` (`PackedLoRA`) when given; without it B is packed for the call.
    public struct LowRankRows {
        public let rows: Range<Int>
        public let a: Tensor, b: Tensor
        public let packed: PackedLoRA?
        public let scale: Float

        public init(rows: Range<Int>, a: Tensor, b: Tensor, packed: PackedLoRA? = nil, scale: Float) {
            self.rows = rows; self.a = a; self.b = b; self.packed = packed; self.scale = scale
        }
    }

    /// y_i (+)= x · W_iᵀ + bias_i (+ adapters) for frozen weights of the same
    /// x, as one job on the GGUF blocks (`QuantizedDecoding.multiply(_:rows:cols:products:mode:)`)
    /// when every weight is blocks the kernels multiply and x has few enough
    /// rows; returns false, having done nothing, otherwise (the caller then
    /// multiplies each on its own). `lowRank[i]` are adapters on rows of
    /// product i, in the same job: its pieces compute t = scale·A·x first
    /// (the job's prelude), then their output rows, then add their rows of
    /// B·t, so the adapters take no job of their own and every core reads them.
    /// Every number is the one `linear` then `addLowRankUpdates` give.
    public func linearShared(_ x: Tensor, frozen ws: [FrozenMatrix], biases: [Tensor?], into ys: [Tensor],
                             accumulate: Bool = false, lowRank: [[LowRankRows]]? = nil) -> Bool {
        let (n, k) = (x.count / x.shape.last!, x.shape.last!)
        guard n > 0, ws.count > 1 || lowRank != nil, QuantizedDecoding.usesKernels(rows: n), computePrecision == .fp32,
              let mode = QuantizedDecoding.mode, x.dtype == .f32, ys.allSatisfy({ $0.dtype == .f32 }) else { return false }
        precondition(lowRank.map { $0.count == ws.count } ?? true, "linearShared: \(lowRank!.count) adapter lists for \(ws.count) weights")
        for (i, w) in ws.enumerated() {
            guard let blocks = w.ggmlBlocks, QuantizedDecoding.supports(blocks.type), w.cols == k,
                  ys[i].count == n * w.rows else { return false }
            for u in lowRank?[i] ?? [] {
                guard u.a.dtype == .f32, u.b.dtype == .f32 else { return false }
                precondition(u.a.rowSize == k && u.b.rows == w.rows && u.b.rowSize == u.a.rows && u.rows.lowerBound >= 0 && u.rows.upperBound <= n,
                             "linearShared: adapter A \(u.a.shape), B \(u.b.shape) on rows \(u.rows) of x \(x.shape) · w [\(w.rows), \(w.cols)]ᵀ")
            }
        }
        let lists = (lowRank ?? []).map { $0.map { u in (u, u.packed ?? PackedLoRA(a: u.a, b: u.b, half: false)) } }
        let downs = lists.flatMap { $0.map { u, packed in
            LowRankDown(x: x.floats + u.rows.lowerBound * k, n: u.rows.count, a: u.a, packed: packed, scale: u.scale)
        } }
        let prelude = LowRankDowns(downs)
        let (t, offsets) = (prelude.t, prelude.offsets)
        defer { t.deallocate() }
        var products: [QuantizedDecoding.Product] = []
        var next = 0
        for (i, w) in ws.enumerated() {
            var acc = accumulate
            if let bias = biases[i] {
                Self.startWithBias(bias, rows: n, into: ys[i].floats, outputs: w.rows, accumulate: accumulate)
                acc = true
            }
            let ups = (i < lists.count ? lists[i] : []).map { u, packed -> QuantizedDecoding.LowRankUp in
                defer { next += 1 }
                return .init(first: u.rows.lowerBound, count: u.rows.count, t: t + offsets[next], packed: packed)
            }
            products.append(.init(blocks: w.ggmlBlocks!, outputs: w.rows, y: ys[i].floats, accumulate: acc, ups: ups))
        }
        withExtendedLifetime(lists) {
            QuantizedDecoding.multiply(x.floats, rows: n, cols: k, products: products, mode: mode,
                                       preludeCount: prelude.pieces.count, prelude: prelude.run, preludeRegions: prelude.regions)
        }
        return true
    }

    /// Each of the n rows of y (`outputs` wide) set to the bias, or the bias
    /// added when accumulating: the products then accumulate onto it.
    static func startWithBias(_ bias: Tensor, rows n: Int, into y: UnsafeMutablePointer<Float>, outputs m: Int, accumulate: Bool) {
        precondition(bias.count == m, "linear: bias \(bias.shape) for \(m) outputs")
        let bp = bias.floats
        for r in 0 ..< n {
            let row = y + r * m
            if accumulate { for j in 0 ..< m { row[j] += bp[j] } } else { row.update(from: bp, count: m) }
        }
    }

    public func linear(_ x: Tensor, frozen w: FrozenMatrix, bias: Tensor?, into y: Tensor, accumulate: Bool) {
        let (n, k, m) = (x.count / x.shape.last!, x.shape.last!, w.rows)
        precondition(w.cols == k && y.count == n * m, "linear: x \(x.shape) · w [\(w.rows), \(w.cols)]ᵀ into y \(y.shape)")
        var beta: Float = accumulate ? 1 : 0
        let yp = y.floats, xp = x.floats
        if let bias {
            Self.startWithBias(bias, rows: n, into: yp, outputs: m, accumulate: accumulate)
            beta = 1
        }
        if m == 0 || n == 0 { return }
        // Decoding: a few rows multiplied on the GGUF blocks themselves.
        if QuantizedDecoding.usesKernels(rows: n), computePrecision == .fp32, let mode = QuantizedDecoding.mode,
           let blocks = w.ggmlBlocks, QuantizedDecoding.supports(blocks.type) {
            QuantizedDecoding.multiply(xp, rows: n, cols: k, blocks: blocks, outputs: m, into: yp, accumulate: beta != 0, mode: mode)
            return
        }
        let tile = min(m, max(1, Self.frozenTileRows))
        // From the buffer pool like every tensor, so it reuses what a tensor
        // freed instead of adding to the peak beside the pool's buffers.
        let scratchBuffer = Tensor.uninitialized([tile * k])
        defer { withExtendedLifetime(scratchBuffer) {} }
        let scratch = scratchBuffer.floats
        // Reduced precision: x rounded once for all tiles, not once per tile.
        let roundedX = computePrecision == .fp32 ? nil : Self.roundedCopy(xp, rows: n, cols: k, ld: k, precision: computePrecision)
        defer { roundedX?.deallocate() }
        var m0 = 0
        while m0 < m {
            let t = min(tile, m - m0)
            dequantizeTile(w, m0, t, into: scratch)
            if let roundedX {
                gemm(transA: false, transB: true, m: n, n: t, k: k, alpha: 1, a: roundedX, lda: k,
                     b: scratch, ldb: k, beta: beta, c: yp + m0, ldc: m, precision: computePrecision, aOnGrid: true)
            } else if n <= Self.gemvRows {
                for r in 0 ..< n {
                    BLAS.sgemv(trans: false, rows: t, cols: k, alpha: 1, a: scratch, lda: k,
                               x: xp + r * k, beta: beta, y: yp + r * m + m0)
                }
            } else {
                // y[:, m0..<m0+t] = x · tileᵀ, written in place with ldc = m
                gemm(transA: false, transB: true, m: n, n: t, k: k, alpha: 1, a: xp, lda: k,
                     b: scratch, ldb: k, beta: beta, c: yp + m0, ldc: m, precision: .fp32)
            }
            m0 += t
        }
    }

    public func linearBackwardInput(_ dy: Tensor, frozen w: FrozenMatrix, into dx: Tensor, accumulate: Bool) {
        let (m, k) = (w.rows, w.cols)
        let n = m == 0 ? dx.count / max(k, 1) : dy.count / m
        precondition(dx.count == n * k, "linearBackwardInput: dy \(dy.shape) · w [\(m), \(k)] into \(dx.shape)")
        let dxp = dx.floats, dyp = dy.floats
        if m == 0 || n == 0 {
            if !accumulate { dxp.update(repeating: 0, count: dx.count) }
            return
        }
        let tile = min(m, max(1, Self.frozenTileRows))
        // From the buffer pool like every tensor, so it reuses what a tensor
        // freed instead of adding to the peak beside the pool's buffers.
        let scratchBuffer = Tensor.uninitialized([tile * k])
        defer { withExtendedLifetime(scratchBuffer) {} }
        let scratch = scratchBuffer.floats
        var beta: Float = accumulate ? 1 : 0
        var m0 = 0
        while m0 < m {
            let t = min(tile, m - m0)
            dequantizeTile(w, m0, t, into: scratch)
            // dx (+)= dy[:, m0..<m0+t] · tile, reading dy's columns with lda = m
            gemm(transA: false, transB: false, m: n, n: k, k: t, alpha: 1, a: dyp + m0, lda: m,
                 b: scratch, ldb: k, beta: beta, c: dxp, ldc: k, precision: computePrecision)
            beta = 1
            m0 += t
        }
    }
}
