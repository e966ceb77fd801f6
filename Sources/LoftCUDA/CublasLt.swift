import CLoftCUDA
import Foundation

/// Column-major GEMMs through cuBLASLt: D = op(A)·op(B) + beta·C with C = D,
/// f32 output, f32 accumulation (CUBLAS_COMPUTE_32F), and f32 or bf16 inputs.
/// The backend maps its row-major products onto this (see CUDABackend.linear).
final class CublasLtRunner: @unchecked Sendable {
    let api: loft_cublaslt
    let device: CUDADevice
    let handle: loft_cublaslt_handle
    let workspace: UInt64
    static let workspaceBytes = 32 << 20
    private let workspaceStorage: AnyObject
    /// Use Loft's own tiled GEMM kernel even where cuBLASLt has an algorithm
    /// (the self-test checks that path this way).
    var forceFallback = false

    init(device: CUDADevice) throws {
        api = try CUDALibraries.cublasLt.get().api
        self.device = device
        device.makeCurrent()
        var h: loft_cublaslt_handle?
        let status = api.cublasLtCreate(&h)
        guard status == 0, let h else { throw CUDAError("cublasLtCreate failed with status \(status); check that cuBLASLt matches the driver's CUDA version") }
        handle = h
        let storage = device.pool.storage(bytes: Self.workspaceBytes, device: .cuda(device.info.index))
        workspace = UInt64(UInt(bitPattern: storage.pointer))
        workspaceStorage = storage
    }

    private func check(_ status: loft_cublas_status, _ what: @autoclosure () -> String) {
        if status != 0 { fatalError("cuBLASLt: \(what()) failed with status \(status)") }
    }

    func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, a: UInt64, lda: Int, b: UInt64, ldb: Int,
              c: UInt64, ldc: Int, beta: Float, inputType: Int32) {
        if forceFallback || !matmul(transA: transA, transB: transB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb,
                                    c: c, ldc: ldc, beta: beta, inputType: inputType) {
            device.launch(inputType == Int32(LOFT_CUDA_R_16BF) ? "loft_gemm_fallback_bf16" : "loft_gemm_fallback_f32",
                          grid: ((m + 15) / 16, (n + 15) / 16, 1), block: 16, blockY: 16,
                          [.int32(transA ? 1 : 0), .int32(transB ? 1 : 0), .int(m), .int(n), .int(k), .pointer(a), .int(lda),
                           .pointer(b), .int(ldb), .pointer(c), .int(ldc), .float(beta)])
        }
    }

    /// cuBLASLt's matmul; false when it has no algorithm for this shape and
    /// alignment (then the caller runs the fallback kernel).
    private func matmul(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, a: UInt64, lda: Int, b: UInt64, ldb: Int,
                        c: UInt64, ldc: Int, beta: Float, inputType: Int32) -> Bool {
        device.makeCurrent()
        let what = "GEMM m=\(m) n=\(n) k=\(k)\(transA ? " Aᵀ" : "")\(transB ? " Bᵀ" : "") (\(inputType == Int32(LOFT_CUDA_R_16BF) ? "bf16" : "f32"))"
        var desc: loft_cublaslt_matmul_desc?
        check(api.cublasLtMatmulDescCreate(&desc, Int32(LOFT_CUBLAS_COMPUTE_32F), Int32(LOFT_CUDA_R_32F)), "\(what): descriptor")
        defer { _ = api.cublasLtMatmulDescDestroy(desc) }
        var opA = Int32(transA ? LOFT_CUBLAS_OP_T : LOFT_CUBLAS_OP_N), opB = Int32(transB ? LOFT_CUBLAS_OP_T : LOFT_CUBLAS_OP_N)
        check(api.cublasLtMatmulDescSetAttribute(desc, Int32(LOFT_CUBLASLT_MATMUL_DESC_TRANSA), &opA, 4), "\(what): transA")
        check(api.cublasLtMatmulDescSetAttribute(desc, Int32(LOFT_CUBLASLT_MATMUL_DESC_TRANSB), &opB, 4), "\(what): transB")
        var la: loft_cublaslt_layout?, lb: loft_cublaslt_layout?, lc: loft_cublaslt_layout?
        check(api.cublasLtMatrixLayoutCreate(&la, inputType, UInt64(transA ? k : m), UInt64(transA ? m : k), Int64(lda)), "\(what): A layout")
        check(api.cublasLtMatrixLayoutCreate(&lb, inputType, UInt64(transB ? n : k), UInt64(transB ? k : n), Int64(ldb)), "\(what): B layout")
        check(api.cublasLtMatrixLayoutCreate(&lc, Int32(LOFT_CUDA_R_32F), UInt64(m), UInt64(n), Int64(ldc)), "\(what): C layout")
        defer {
            _ = api.cublasLtMatrixLayoutDestroy(la)
            _ = api.cublasLtMatrixLayoutDestroy(lb)
            _ = api.cublasLtMatrixLayoutDestroy(lc)
        }
        var pref: loft_cublaslt_preference?
        check(api.cublasLtMatmulPreferenceCreate(&pref), "\(what): preference")
        defer { _ = api.cublasLtMatmulPreferenceDestroy(pref) }
        var limit = UInt64(Self.workspaceBytes)
        check(api.cublasLtMatmulPreferenceSetAttribute(pref, Int32(LOFT_CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES), &limit, 8), "\(what): workspace")
        // The heuristic assumes 256-byte aligned operands unless told; row
        // views (a chunk of the logits, say) are often less aligned.
        for (attribute, pointer) in [(LOFT_CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, a), (LOFT_CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, b),
                                     (LOFT_CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, c), (LOFT_CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, c)] {
            var alignment = UInt32(min(256, 1 << pointer.trailingZeroBitCount))
            check(api.cublasLtMatmulPreferenceSetAttribute(pref, Int32(attribute), &alignment, 4), "\(what): alignment")
        }
        var result = loft_cublaslt_heuristic()
        var found: Int32 = 0
        // A failed search (CUBLAS_STATUS_NOT_SUPPORTED) means no algorithm.
        if api.cublasLtMatmulAlgoGetHeuristic(handle, desc, la, lb, lc, lc, pref, 1, &result, &found) != 0 { return false }
        if found == 0 || result.state != 0 { return false }
        var alpha: Float = 1, betaValue = beta
        let status = withUnsafePointer(to: &result.algo) { algo in
            api.cublasLtMatmul(handle, desc, &alpha, UnsafeRawPointer(bitPattern: UInt(a)), la, UnsafeRawPointer(bitPattern: UInt(b)), lb,
                               &betaValue, UnsafeRawPointer(bitPattern: UInt(c)), lc, UnsafeMutableRawPointer(bitPattern: UInt(c)), lc,
                               algo, UnsafeMutableRawPointer(bitPattern: UInt(workspace)), Self.workspaceBytes, nil)
        }
        // 15 = CUBLAS_STATUS_NOT_SUPPORTED: this algorithm after all cannot run it.
        if status == 15 { return false }
        check(status, what)
        if device.synchronizeEachLaunch { device.checked(device.driver.cuCtxSynchronize(), what) }
        return true
    }
}
