/// The one place the CPU backend multiplies matrices: every linear layer,
/// frozen tile, attention block and lm_head product comes through `gemm`.
///
/// At `.fp32` it is BLAS's sgemm. At `.bf16`/`.fp16` it rounds op(A) and
/// op(B) to that grid and then runs sgemm: a product of two bf16 (8-bit
/// mantissa) or fp16 (11-bit) values is exact in f32, so this is exactly a
/// reduced-precision GEMM that accumulates in f32 and writes f32, as
/// autocast's GEMMs on a GPU do. bf16 products, LoRA's rank-16 ones
/// included, go to Loft's AVX512-BF16 kernel instead where
/// `CPUKernelChoice.bf16` found it faster on this CPU (AMD Zen 4: about twice
/// sgemm's flops; on Intel Emerald Rapids vdpbf16ps delivers half an fp32
/// FMA's flops and sgemm stays, BENCHMARKS.md); the rounded copies here ran
/// the rank-16 products at a fifth of the kernel's rate.
extension CPUBackend {
    /// Block sizes of the rounded operands: op(A) in rows × depth blocks,
    /// op(B) in depth × columns panels, so the rounded copies stay a few MiB
    /// however large the GEMM (the lm_head's 49152 × 576 included) and
    /// `loft plan`'s workspace holds them.
    static let roundedBlock = (rows: 512, depth: 512, columns: 256)

    /// C[m, n] = alpha · op(A)[m, k] · op(B)[k, n] + beta · C, row-major, with
    /// A and B rounded to `precision` first (alpha and beta apply in f32).
    /// `aOnGrid`: A is already rounded (a caller multiplying one A by many
    /// weight tiles rounds it once).
    func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
              a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
              beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, precision: ComputePrecision, aOnGrid: Bool = false) {
        if precision == .fp32 || m == 0 || n == 0 || k == 0 {
            BLAS.sgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
                       b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
            return
        }
        if precision == .bf16 && CPUKernelChoice.bf16.bf16Kernel {
            // The same bf16 products accumulated in fp32, rounded while packed.
            CPUGEMM.bf16(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
                         b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
            return
        }
        let block = Self.roundedBlock
        // Element (row, col) of op(A) / op(B) as stored.
        func aAt(_ row: Int, _ depth: Int) -> UnsafePointer<Float> { transA ? a + depth * lda + row : a + row * lda + depth }
        func bAt(_ depth: Int, _ col: Int) -> UnsafePointer<Float> { transB ? b + col * ldb + depth : b + depth * ldb + col }
        var d0 = 0
        while d0 < k {
            let depth = min(block.depth, k - d0)
            // The depth blocks add up in C: beta applies once, on the first.
            let blockBeta = d0 == 0 ? beta : 1
            var i0 = 0
            while i0 < m {
                let rows = min(block.rows, m - i0)
                // op(A)[i0..<i0+rows, d0..<d0+depth], stored (transposed or not) as in A.
                let (aRows, aCols) = transA ? (depth, rows) : (rows, depth)
                let roundedA = aOnGrid ? nil : Self.roundedCopy(aAt(i0, d0), rows: aRows, cols: aCols, ld: lda, precision: precision)
                var j0 = 0
                while j0 < n {
                    let cols = min(block.columns, n - j0)
                    let (bRows, bCols) = transB ? (cols, depth) : (depth, cols)
                    let roundedB = Self.roundedCopy(bAt(d0, j0), rows: bRows, cols: bCols, ld: ldb, precision: precision)
                    BLAS.sgemm(transA: transA, transB: transB, m: rows, n: cols, k: depth, alpha: alpha,
                               a: roundedA.map { UnsafePointer($0) } ?? aAt(i0, d0), lda: roundedA == nil ? lda : aCols,
                               b: roundedB, ldb: bCols, beta: blockBeta, c: c + i0 * ldc + j0, ldc: ldc)
                    roundedB.deallocate()
                    j0 += cols
                }
                roundedA?.deallocate()
                i0 += rows
            }
            d0 += depth
        }
    }

    /// A packed copy (leading dimension `cols`) of a strided rows × cols block, rounded.
    static func roundedCopy(_ src: UnsafePointer<Float>, rows: Int, cols: Int, ld: Int,
                            precision: ComputePrecision) -> UnsafeMutablePointer<Float> {
        let dst = UnsafeMutablePointer<Float>.allocate(capacity: max(1, rows * cols))
        for r in 0 ..< rows { (dst + r * cols).update(from: src + r * ld, count: cols) }
        precision.round(UnsafeMutableBufferPointer(start: dst, count: rows * cols))
        return dst
    }
}
