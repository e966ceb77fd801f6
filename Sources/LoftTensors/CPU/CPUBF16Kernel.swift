import CLoftGEMM

/// GEMMs in bf16 precision on the CPU: inputs rounded to bf16 (round to
/// nearest even), products accumulated in fp32, fp32 output.
/// C[m, n] = alpha · op(A)[m, k] · op(B)[k, n] + beta · C, row-major, as `BLAS.sgemm`.
///
/// With AVX512-BF16 this runs Loft's own kernel (Sources/CLoftGEMM, vdpbf16ps,
/// split over Loft's threads as sgemm is, see `BLAS.split`); elsewhere it
/// rounds copies of the inputs and calls sgemm. Denormal bf16 inputs and
/// products are flushed to zero by the instruction. The backend's bf16 GEMMs
/// come here where `CPUKernelChoice.bf16` says the kernel is faster (AMD Zen
/// 4: vdpbf16ps at the fp32 FMA's rate); on Intel Emerald Rapids it retires at
/// half that rate and the kernel is slower than sgemm (BENCHMARKS.md).
public enum CPUGEMM {
    /// Whether this CPU runs the AVX512-BF16 kernel.
    public static let bf16KernelAvailable = loft_gemm_bf16_available() != 0

    /// Off: always round and call sgemm (tests compare both paths).
    nonisolated(unsafe) public static var useBF16Kernel = bf16KernelAvailable

    /// B given as fp32, rounded to bf16 here.
    public static func bf16(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                            alpha: Float, a: UnsafePointer<Float>, lda: Int,
                            b: UnsafePointer<Float>, ldb: Int,
                            beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        if m == 0 || n == 0 { return }
        if useBF16Kernel {
            return BLAS.splitProduct(transA: transA, transB: transB, m: m, n: n, k: k, a: a, lda: lda, ldb: ldb, c: c, ldc: ldc) {
                loft_gemm_bf16_f32(transA ? 1 : 0, transB ? 1 : 0, $0, $1, k, alpha, $2, lda, b + $3, ldb, beta, $4, ldc, 1)
            }
        }
        roundedSgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
                     ldb: ldb, beta: beta, c: c, ldc: ldc) { BFloat16.fromFloat(b[$0]) }
    }

    /// B given as bf16 bits (a frozen weight stored in bf16).
    public static func bf16(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                            alpha: Float, a: UnsafePointer<Float>, lda: Int,
                            b: UnsafePointer<UInt16>, ldb: Int,
                            beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        if m == 0 || n == 0 { return }
        if useBF16Kernel {
            return BLAS.splitProduct(transA: transA, transB: transB, m: m, n: n, k: k, a: a, lda: lda, ldb: ldb, c: c, ldc: ldc) {
                loft_gemm_bf16_b16(transA ? 1 : 0, transB ? 1 : 0, $0, $1, k, alpha, $2, lda, b + $3, ldb, beta, $4, ldc, 1)
            }
        }
        roundedSgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
                     ldb: ldb, beta: beta, c: c, ldc: ldc) { b[$0] }
    }

    /// The fallback: dense copies of A and B rounded to bf16 (B's element at
    /// offset o has bits `bBits(o)`), multiplied with sgemm.
    private static func roundedSgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                                     alpha: Float, a: UnsafePointer<Float>, lda: Int, ldb: Int,
                                     beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int,
                                     bBits: (Int) -> UInt16) {
        let aRounded = roundedCopy(rows: transA ? k : m, cols: transA ? m : k, ld: lda) { BFloat16.fromFloat(a[$0]) }
        let bRounded = roundedCopy(rows: transB ? n : k, cols: transB ? k : n, ld: ldb, bBits)
        defer { aRounded.deallocate(); bRounded.deallocate() }
        BLAS.sgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
                   a: aRounded, lda: transA ? m : k, b: bRounded, ldb: transB ? k : n,
                   beta: beta, c: c, ldc: ldc)
    }

    /// A dense rows × cols fp32 copy of a strided matrix whose element at
    /// offset `r · ld + c` has bf16 bits `bits(r · ld + c)`.
    private static func roundedCopy(rows: Int, cols: Int, ld: Int,
                                    _ bits: (Int) -> UInt16) -> UnsafeMutablePointer<Float> {
        let out = UnsafeMutablePointer<Float>.allocate(capacity: max(rows * cols, 1))
        for r in 0 ..< rows {
            for c in 0 ..< cols { out[r * cols + c] = BFloat16.toFloat(bits(r * ld + c)) }
        }
        return out
    }
}
