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

    /// y[m] = alpha · op(A)[m, n] · x + beta · y, A row-major with leading dimension lda.
    @inline(__always)
    static func sgemv(trans: Bool, rows: Int, cols: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
                      x: UnsafePointer<Float>, incx: Int = 1, beta: Float, y: UnsafeMutablePointer<Float>, incy: Int = 1) {
        if rows == 0 || cols == 0 { return }
        cblas_sgemv(CblasRowMajor, trans ? CblasTrans : CblasNoTrans, Int32(rows), Int32(cols), alpha, a, Int32(lda),
                    x, Int32(incx), beta, y, Int32(incy))
    }
}
