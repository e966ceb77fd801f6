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

    /// Runs `body` with BLAS limited to `threads` threads. Loft's own loops
    /// that call BLAS from several threads at once (attention, per head) use
    /// this so BLAS's pool does not fight them for the same cores.
    static func withThreads<T>(_ threads: Int, _ body: () -> T) -> T {
        #if canImport(Accelerate)
        return body()
        #else
        let old = openblas_get_num_threads()
        openblas_set_num_threads(Int32(threads))
        defer { openblas_set_num_threads(old) }
        return body()
        #endif
    }
}
