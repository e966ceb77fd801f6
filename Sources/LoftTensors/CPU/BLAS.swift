#if canImport(Accelerate)
import Accelerate
#else
import CLoftBLAS
#endif

/// Row-major single-precision GEMM through the platform BLAS: OpenBLAS on
/// Linux (Debian's libopenblas-dev, threaded over all cores), Accelerate on
/// macOS. C[m, n] = alpha · op(A)[m, k] · op(B)[k, n] + beta · C.
enum BLAS {
    @inline(__always)
    static func sgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                      alpha: Float, a: UnsafePointer<Float>, lda: Int,
                      b: UnsafePointer<Float>, ldb: Int,
                      beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        if m == 0 || n == 0 { return }
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
}
