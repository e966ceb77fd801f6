/// The one place the CPU backend multiplies matrices: every linear layer,
/// frozen tile, attention block and lm_head product comes through `gemm`.
///
/// At `.fp32` it is BLAS's sgemm. At `.bf16`/`.fp16` it rounds op(A) and
/// op(B) to that grid and then runs sgemm: a product of two bf16 (8-bit
/// mantissa) or fp16 (11-bit) values is exact in f32, so this is exactly a
/// reduced-precision GEMM that accumulates in f32 and writes f32, as
/// autocast's GEMMs on a GPU do. A native kernel (AVX512-BF16 dot products)
/// can replace the "round, then sgemm" body here without any caller changing.
extension CPUBackend {
    /// Columns of op(B) rounded and multiplied at a time: bounds the rounded
    /// copy of a large B (the lm_head's 49152 × 576) to a panel.
    static let roundedPanelColumns = 256

    /// C[m, n] = alpha · op(A)[m, k] · op(B)[k, n] + beta · C, row-major, with
    /// A and B rounded to `precision` first (alpha and beta apply in f32).
    func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
              a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
              beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, precision: ComputePrecision) {
        if precision == .fp32 || m == 0 || n == 0 || k == 0 {
            BLAS.sgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
                       b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
            return
        }
        // A as stored: m × k (or k × m transposed); copied rounded, packed.
        let (aRows, aCols) = transA ? (k, m) : (m, k)
        let roundedA = Self.roundedCopy(a, rows: aRows, cols: aCols, ld: lda, precision: precision)
        defer { roundedA.deallocate() }
        let panel = Self.roundedPanelColumns
        var j0 = 0
        while j0 < n {
            let width = min(panel, n - j0)
            // Columns j0..<j0+width of op(B): rows of B when transposed, else columns.
            let roundedB = transB
                ? Self.roundedCopy(b + j0 * ldb, rows: width, cols: k, ld: ldb, precision: precision)
                : Self.roundedCopy(b + j0, rows: k, cols: width, ld: ldb, precision: precision)
            BLAS.sgemm(transA: transA, transB: transB, m: m, n: width, k: k, alpha: alpha,
                       a: roundedA, lda: aCols, b: roundedB, ldb: transB ? k : width,
                       beta: beta, c: c + j0, ldc: ldc)
            roundedB.deallocate()
            j0 += width
        }
    }

    /// A packed copy (leading dimension `cols`) of a strided rows × cols block, rounded.
    private static func roundedCopy(_ src: UnsafePointer<Float>, rows: Int, cols: Int, ld: Int,
                                    precision: ComputePrecision) -> UnsafeMutablePointer<Float> {
        let dst = UnsafeMutablePointer<Float>.allocate(capacity: max(1, rows * cols))
        for r in 0 ..< rows { (dst + r * cols).update(from: src + r * ld, count: cols) }
        precision.round(UnsafeMutableBufferPointer(start: dst, count: rows * cols))
        return dst
    }
}
