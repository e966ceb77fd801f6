#if canImport(Accelerate)
import Accelerate
#else
import CLoftBLAS
#endif
import Dispatch

/// Row-major single-precision GEMM through the platform BLAS: OpenBLAS on
/// Linux (Debian's libopenblas-dev), Accelerate on macOS.
/// C[m, n] = alpha · op(A)[m, k] · op(B)[k, n] + beta · C.
///
/// One thread pool for everything: OpenBLAS runs single-threaded and Loft
/// splits each large product over its own worker threads (the ones its
/// elementwise loops use), by rows of C or, for a short C, by columns. With
/// OpenBLAS's own pool, its idle threads spin on sched_yield between GEMMs
/// and take the cores from Loft's loops: `perf` put the scheduler at 11 % of
/// a SmolLM2 training step's CPU time on 2 cores.
enum BLAS {
    /// Threads a top-level product is split over: the backend's threads, or
    /// 1 inside Loft's own parallel loops, which call BLAS from several
    /// threads at once (`withThreads`).
    static var splitThreads: Int { threadsOverride ?? CPUBackend.threads }
    nonisolated(unsafe) private static var threadsOverride: Int?

    /// OpenBLAS single-threaded, once per process.
    private static let singleThreaded: Void = {
        #if !canImport(Accelerate)
        openblas_set_num_threads(1)
        #endif
    }()

    /// Products below this many multiply-adds run on one thread: waking a
    /// second costs more than it saves.
    static let splitMinimumMACs = 1 << 21

    @inline(__always)
    private static func call(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                             alpha: Float, a: UnsafePointer<Float>, lda: Int,
                             b: UnsafePointer<Float>, ldb: Int,
                             beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    static func sgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                      alpha: Float, a: UnsafePointer<Float>, lda: Int,
                      b: UnsafePointer<Float>, ldb: Int,
                      beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        if m == 0 || n == 0 { return }
        _ = singleThreaded
        splitProduct(transA: transA, transB: transB, m: m, n: n, k: k, a: a, lda: lda, ldb: ldb, c: c, ldc: ldc) { pm, pn, pa, bOffset, pc in
            call(transA: transA, transB: transB, m: pm, n: pn, k: k, alpha: alpha, a: pa, lda: lda,
                 b: b + bOffset, ldb: ldb, beta: beta, c: pc, ldc: ldc)
        }
    }

    /// `split` for C = op(A) · op(B): calls `piece(m, n, a, bOffset, c)` with
    /// each piece's shape, its first element of A and of C, and the offset of
    /// its first element of B.
    static func splitProduct(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int, ldb: Int,
                             c: UnsafeMutablePointer<Float>, ldc: Int,
                             _ piece: (Int, Int, UnsafePointer<Float>, Int, UnsafeMutablePointer<Float>) -> Void) {
        split(m: m, n: n, k: k) { byRows, lo, len in
            if byRows {
                piece(len, n, transA ? a + lo : a + lo * lda, 0, c + lo * ldc)
            } else {
                piece(m, len, a, transB ? lo * ldb : lo, c + lo)
            }
        }
    }

    /// Runs `piece(byRows, lo, len)` for each piece of a product whose C is
    /// m × n, on `splitThreads` threads at once: rows lo..<lo+len of C when
    /// `byRows`, else columns. A small product is one piece (all rows) on the
    /// calling thread. Pieces are multiples of 16 so each stays aligned to the
    /// kernels' tiles. Split by rows when C has enough of them, else by columns.
    static func split(m: Int, n: Int, k: Int, _ piece: (_ byRows: Bool, _ lo: Int, _ len: Int) -> Void) {
        let threads = splitThreads
        if threads <= 1 || m * n * k < splitMinimumMACs {
            piece(true, 0, m)
            return
        }
        let byRows = m >= n || m >= 64 * threads
        let extent = byRows ? m : n
        inPieces(extent, pieces: min(threads, max(1, extent / 16))) { piece(byRows, $0, $1) }
    }

    /// Runs `body(lo, len)` over 0..<extent cut into at most `pieces` ranges
    /// of a multiple of 16, at once (inline when there is one).
    private static func inPieces(_ extent: Int, pieces: Int, _ body: (_ lo: Int, _ len: Int) -> Void) {
        let step = ((extent + pieces - 1) / pieces + 15) / 16 * 16
        let count = (extent + step - 1) / step
        if count <= 1 { body(0, extent); return }
        teamRun(count, threads: count) { p in
            let lo = p * step
            body(lo, min(step, extent - lo))
        }
    }

    /// y[m] = alpha · op(A)[m, n] · x + beta · y, A row-major with leading
    /// dimension lda; split over the threads by rows of op(A) when large.
    static func sgemv(trans: Bool, rows: Int, cols: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
                      x: UnsafePointer<Float>, incx: Int = 1, beta: Float, y: UnsafeMutablePointer<Float>, incy: Int = 1) {
        if rows == 0 || cols == 0 { return }
        _ = singleThreaded
        let outputs = trans ? cols : rows
        let threads = splitThreads
        if threads <= 1 || rows * cols < splitMinimumMACs / 4 || outputs < 64 * threads {
            cblas_sgemv(CblasRowMajor, trans ? CblasTrans : CblasNoTrans, Int32(rows), Int32(cols), alpha, a, Int32(lda),
                        x, Int32(incx), beta, y, Int32(incy))
            return
        }
        inPieces(outputs, pieces: threads) { lo, len in
            if trans {
                // yᵀ = xᵀ A: columns lo..<lo+len of A.
                cblas_sgemv(CblasRowMajor, CblasTrans, Int32(rows), Int32(len), alpha, a + lo, Int32(lda),
                            x, Int32(incx), beta, y + lo * incy, Int32(incy))
            } else {
                cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(len), Int32(cols), alpha, a + lo * lda, Int32(lda),
                            x, Int32(incx), beta, y + lo * incy, Int32(incy))
            }
        }
    }

    /// Runs `body` with top-level products split over at most `threads`
    /// threads. Loft's own loops that call BLAS from several threads at once
    /// (attention, per head) pass 1.
    static func withThreads<T>(_ threads: Int, _ body: () -> T) -> T {
        let old = threadsOverride
        threadsOverride = threads
        defer { threadsOverride = old }
        return body()
    }
}
