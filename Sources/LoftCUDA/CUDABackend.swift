import CLoftCUDA
import Foundation
import LoftTensors

/// The Backend protocol on an NVIDIA GPU: matrix products through cuBLASLt
/// (f32, or bf16 operands with f32 accumulation), everything else in Loft's
/// own CUDA C kernels (KernelSources), compiled by NVRTC for the device.
///
/// Tensors live in device memory (`Device.cuda(i)`); `upload` and `download`
/// move f32 values across. Activations are f32, as on the CPU backend, so a
/// model computes the same function on either; frozen weights may be bf16.
public final class CUDABackend: Backend, @unchecked Sendable {
    public let name: String
    public let device: Device
    let gpu: CUDADevice
    let blas: CublasLtRunner

    /// Opens device `index`, compiling (or loading from the cache) every
    /// kernel. Throws, naming what is missing and what to do, on machines
    /// without a usable GPU, driver, NVRTC or cuBLASLt.
    public init(deviceIndex index: Int = 0) throws {
        gpu = try CUDADevice(index: index)
        blas = try CublasLtRunner(device: gpu)
        device = .cuda(index)
        name = "cuda:\(index) (\(gpu.info.name), sm_\(gpu.info.arch))"
    }

    public var deviceInfo: CUDADeviceInfo { gpu.info }
    /// How each kernel module was obtained (target, from the cache or not).
    public var kernelImages: [KernelCompiler.Image] { gpu.images }

    /// Check every launch synchronously (slower; names the failing kernel).
    public var synchronizeEachLaunch: Bool {
        get { gpu.synchronizeEachLaunch }
        set { gpu.synchronizeEachLaunch = newValue }
    }

    /// GEMMs in Loft's own tiled kernel instead of cuBLASLt (for checking
    /// that path; cuBLASLt shapes without an algorithm take it anyway).
    public var gemmFallback: Bool {
        get { blas.forceFallback }
        set { blas.forceFallback = newValue }
    }

    /// Waits for all issued work (for timing).
    public func synchronize() { gpu.synchronize() }

    @inline(__always)
    func ptr(_ t: Tensor) -> UInt64 {
        precondition(t.device == device, "a \(t.device) tensor \(t.shape) was given to the \(device) backend; upload it first")
        return UInt64(UInt(bitPattern: t.rawPointer))
    }

    @inline(__always)
    func f32(_ t: Tensor, _ op: String) -> UInt64 {
        precondition(t.dtype == .f32, "\(op): a \(t.dtype) tensor where f32 is needed")
        return ptr(t)
    }

    // MARK: memory

    public func zeros(_ shape: [Int], dtype: DType = .f32) -> Tensor {
        let bytes = shape.reduce(1, *) * dtype.byteSize
        let s = gpu.pool.storage(bytes: bytes, device: device)
        if bytes > 0 {
            gpu.makeCurrent()
            gpu.checked(gpu.driver.cuMemsetD8(UInt64(UInt(bitPattern: s.pointer)), 0, bytes), "zeroing \(bytes) bytes")
        }
        return Tensor(storage: s, shape: shape, dtype: dtype)
    }

    /// A device tensor whose contents are undefined (written whole before read).
    public func uninitialized(_ shape: [Int], dtype: DType = .f32) -> Tensor {
        Tensor(storage: gpu.pool.storage(bytes: shape.reduce(1, *) * dtype.byteSize, device: device), shape: shape, dtype: dtype)
    }

    public func upload(_ values: [Float], shape: [Int]) -> Tensor {
        precondition(values.count == shape.reduce(1, *), "\(values.count) values for shape \(shape)")
        let t = uninitialized(shape)
        values.withUnsafeBytes { gpu.copyToDevice(ptr(t), $0.baseAddress!, bytes: $0.count) }
        return t
    }

    /// A bf16 device tensor of `values` rounded to nearest even (for frozen
    /// weights: half the memory, and cuBLASLt's bf16 tensor-core GEMMs).
    public func uploadBF16(_ values: [Float], shape: [Int]) -> Tensor {
        precondition(values.count == shape.reduce(1, *), "\(values.count) values for shape \(shape)")
        let bits = values.map { BFloat16.fromFloat($0) }
        let t = uninitialized(shape, dtype: .bf16)
        bits.withUnsafeBytes { gpu.copyToDevice(ptr(t), $0.baseAddress!, bytes: $0.count) }
        return t
    }

    /// Raw bytes onto the device (quantized blocks, say), as a [count] u8-sized tensor of i32 dtype is
    /// not meaningful, so this returns bare storage.
    func uploadBytes(_ bytes: [UInt8]) -> Storage { gpu.temporary(bytes) }

    public func download(_ tensor: Tensor) -> [Float] {
        if tensor.device == .cpu { return tensor.toArray() }
        switch tensor.dtype {
        case .f32:
            var out = [Float](repeating: 0, count: tensor.count)
            out.withUnsafeMutableBytes { gpu.copyToHost($0.baseAddress!, ptr(tensor), bytes: $0.count) }
            return out
        case .bf16:
            var bits = [UInt16](repeating: 0, count: tensor.count)
            bits.withUnsafeMutableBytes { gpu.copyToHost($0.baseAddress!, ptr(tensor), bytes: $0.count) }
            return bits.map(BFloat16.toFloat)
        case .f16:
            var bits = [Float16](repeating: 0, count: tensor.count)
            bits.withUnsafeMutableBytes { gpu.copyToHost($0.baseAddress!, ptr(tensor), bytes: $0.count) }
            return bits.map(Float.init)
        case .i32:
            var ints = [Int32](repeating: 0, count: tensor.count)
            ints.withUnsafeMutableBytes { gpu.copyToHost($0.baseAddress!, ptr(tensor), bytes: $0.count) }
            return ints.map(Float.init)
        }
    }

    public func copy(_ source: Tensor, into destination: Tensor) {
        precondition(source.byteCount == destination.byteCount && source.dtype == destination.dtype,
                     "copy of \(source.shape) \(source.dtype) into \(destination.shape) \(destination.dtype)")
        let bytes = source.byteCount
        if bytes == 0 { return }
        switch (source.device, destination.device) {
        case (.cpu, .cpu): destination.rawPointer.copyMemory(from: source.rawPointer, byteCount: bytes)
        case (.cpu, _): gpu.copyToDevice(ptr(destination), source.rawPointer, bytes: bytes)
        case (_, .cpu): gpu.copyToHost(destination.rawPointer, ptr(source), bytes: bytes)
        default:
            gpu.makeCurrent()
            gpu.checked(gpu.driver.cuMemcpyDtoD(ptr(destination), ptr(source), bytes), "device-to-device copy of \(bytes) bytes")
        }
    }

    // MARK: linear layers

    /// An operand for cuBLASLt: its device pointer and type, converted to
    /// bf16 when the other operand is bf16 (cuBLASLt wants A and B alike).
    private func operands(_ a: Tensor, _ b: Tensor, _ op: String) -> (UInt64, UInt64, Int32, [Tensor]) {
        precondition(a.dtype == .f32 || a.dtype == .bf16, "\(op): \(a.dtype) operand; use f32 or bf16")
        precondition(b.dtype == .f32 || b.dtype == .bf16, "\(op): \(b.dtype) operand; use f32 or bf16")
        if a.dtype == .f32 && b.dtype == .f32 { return (ptr(a), ptr(b), Int32(LOFT_CUDA_R_32F), []) }
        var keep: [Tensor] = []
        func bf16(_ t: Tensor) -> UInt64 {
            if t.dtype == .bf16 { return ptr(t) }
            let c = uninitialized(t.shape, dtype: .bf16)
            gpu.launch("loft_f32_to_bf16", grid: CUDADevice.grid(t.count), block: 256,
                       [.pointer(ptr(t)), .pointer(ptr(c)), .long(t.count)])
            keep.append(c)
            return ptr(c)
        }
        return (bf16(a), bf16(b), Int32(LOFT_CUDA_R_16BF), keep)
    }

    public func linear(_ x: Tensor, _ w: Tensor, bias: Tensor?, into y: Tensor, accumulate: Bool) {
        let (k, m) = (x.shape.last!, w.shape[0])
        let n = x.count / k
        precondition(w.rowSize == k && y.count == n * m, "linear: x \(x.shape) · w \(w.shape)ᵀ into y \(y.shape)")
        var beta: Float = accumulate ? 1 : 0
        if let bias {
            precondition(bias.count == m, "linear: bias \(bias.shape) for \(m) outputs")
            gpu.launch("loft_bias_rows", grid: CUDADevice.grid(n * m), block: 256,
                       [.pointer(f32(y, "linear")), .pointer(f32(bias, "linear bias")), .long(n), .int(m), .int(accumulate ? 1 : 0)])
            beta = 1
        }
        if n == 0 || m == 0 { return }
        if k == 0 { if beta == 0 { gpu.launch("loft_scale", grid: CUDADevice.grid(y.count), block: 256, [.pointer(ptr(y)), .float(0), .long(y.count)]) }; return }
        let (wp, xp, type, keep) = operands(w, x, "linear")
        // Row-major y[N,M] is column-major yᵀ (M×N) = op_T(w as K×M) · (x as K×N).
        blas.gemm(transA: true, transB: false, m: m, n: n, k: k, a: wp, lda: k, b: xp, ldb: k,
                  c: f32(y, "linear output"), ldc: m, beta: beta, inputType: type)
        withExtendedLifetime(keep) {}
    }

    public func linearBackwardInput(_ dy: Tensor, _ w: Tensor, into dx: Tensor, accumulate: Bool) {
        let (m, k) = (w.shape[0], w.rowSize)
        let n = dy.count / m
        precondition(dx.count == n * k, "linearBackwardInput: dy \(dy.shape) · w \(w.shape) into \(dx.shape)")
        if n == 0 || k == 0 { return }
        let (wp, dyp, type, keep) = operands(w, dy, "linearBackwardInput")
        // dxᵀ (K×N) = (w as K×M) · (dy as M×N).
        blas.gemm(transA: false, transB: false, m: k, n: n, k: m, a: wp, lda: k, b: dyp, ldb: m,
                  c: f32(dx, "linearBackwardInput output"), ldc: k, beta: accumulate ? 1 : 0, inputType: type)
        withExtendedLifetime(keep) {}
    }

    public func linearBackwardWeight(_ dy: Tensor, _ x: Tensor, into dw: Tensor, accumulate: Bool) {
        let (m, k) = (dw.shape[0], dw.rowSize)
        let n = x.count / k
        precondition(dy.count == n * m, "linearBackwardWeight: dy \(dy.shape)ᵀ · x \(x.shape) into \(dw.shape)")
        if m == 0 || k == 0 { return }
        if n == 0 { if !accumulate { gpu.launch("loft_scale", grid: CUDADevice.grid(dw.count), block: 256, [.pointer(ptr(dw)), .float(0), .long(dw.count)]) }; return }
        let (xp, dyp, type, keep) = operands(x, dy, "linearBackwardWeight")
        // dwᵀ (K×M) = (x as K×N) · op_T(dy as M×N).
        blas.gemm(transA: false, transB: true, m: k, n: m, k: n, a: xp, lda: k, b: dyp, ldb: m,
                  c: f32(dw, "linearBackwardWeight output"), ldc: k, beta: accumulate ? 1 : 0, inputType: type)
        withExtendedLifetime(keep) {}
    }

    // MARK: normalisation

    public func rmsNorm(_ x: Tensor, weight: Tensor, eps: Float, weightOffset: Float, into y: Tensor, rstd: Tensor?) {
        let d = weight.count
        let n = x.count / d
        precondition(x.count == n * d && y.count == x.count, "rmsNorm: x \(x.shape), weight \(weight.shape), y \(y.shape)")
        gpu.launch("loft_rms_norm", grid: (n, 1, 1), block: 256,
                   [.pointer(f32(x, "rmsNorm")), .pointer(f32(weight, "rmsNorm weight")), .pointer(f32(y, "rmsNorm")),
                    .pointer(rstd.map { f32($0, "rmsNorm rstd") } ?? 0), .long(n), .int(d), .float(eps), .float(weightOffset)])
    }

    public func rmsNormBackward(_ dy: Tensor, x: Tensor, weight: Tensor, weightOffset: Float, rstd: Tensor,
                                dx: Tensor, accumulate: Bool, dweight: Tensor?) {
        let d = weight.count
        let n = x.count / d
        precondition(dy.count == x.count && dx.count == x.count && rstd.count == n, "rmsNormBackward: shapes disagree")
        // The weight gradient reads dy before dx is written: dx may alias dy.
        if let dweight {
            gpu.launch("loft_rms_norm_weight_grad", grid: ((d + 255) / 256, 1, 1), block: 256,
                       [.pointer(f32(dy, "rmsNormBackward")), .pointer(f32(x, "rmsNormBackward")), .pointer(f32(rstd, "rmsNormBackward")),
                        .pointer(f32(dweight, "rmsNormBackward dweight")), .long(n), .int(d)])
        }
        gpu.launch("loft_rms_norm_backward", grid: (n, 1, 1), block: 256,
                   [.pointer(f32(dy, "rmsNormBackward")), .pointer(f32(x, "rmsNormBackward")), .pointer(f32(weight, "rmsNormBackward")),
                    .pointer(f32(rstd, "rmsNormBackward")), .pointer(f32(dx, "rmsNormBackward")), .long(n), .int(d),
                    .float(weightOffset), .int(accumulate ? 1 : 0)])
    }

    // MARK: rotary position embedding

    public func rope(_ x: Tensor, heads: Int, headDim: Int, positions: [Int32], invFreq: [Float],
                     attentionScale: Float, inverse: Bool) {
        let half = invFreq.count  // headDim/2, or fewer with partial rotary
        let n = x.count / (heads * headDim)
        precondition(n == positions.count && half > 0 && 2 * half <= headDim,
                     "rope: x \(x.shape) with \(heads)×\(headDim), \(positions.count) positions, \(invFreq.count) frequencies")
        let pos = gpu.temporary(positions), freq = gpu.temporary(invFreq)
        gpu.launch("loft_rope", grid: CUDADevice.grid(n * heads * half), block: 256,
                   [.pointer(f32(x, "rope")), .pointer(UInt64(UInt(bitPattern: pos.pointer))), .pointer(UInt64(UInt(bitPattern: freq.pointer))),
                    .long(n), .int(heads), .int(headDim), .int(half), .float(attentionScale), .float(inverse ? -1 : 1)])
        withExtendedLifetime((pos, freq)) {}
    }

    // MARK: elementwise

    private func elementwise(_ name: String, _ count: Int, _ args: [KernelArgument]) {
        gpu.launch(name, grid: CUDADevice.grid(count), block: 256, args)
    }

    public func swiglu(gate: Tensor, up: Tensor, into out: Tensor) { gated("swiglu", gate, up, out) }
    public func swigluBackward(_ dOut: Tensor, gate: Tensor, up: Tensor, dGate: Tensor, dUp: Tensor) {
        gatedBackward("swiglu", dOut, gate, up, dGate, dUp)
    }
    public func geglu(gate: Tensor, up: Tensor, into out: Tensor) { gated("geglu", gate, up, out) }
    public func gegluBackward(_ dOut: Tensor, gate: Tensor, up: Tensor, dGate: Tensor, dUp: Tensor) {
        gatedBackward("geglu", dOut, gate, up, dGate, dUp)
    }

    public func copyColumns(_ source: Tensor, from: Int, into destination: Tensor, at: Int, count: Int) {
        let (n, sw, dw) = (source.rows, source.rowSize, destination.rowSize)
        precondition(destination.rows == n && from >= 0 && at >= 0 && count >= 0 && from + count <= sw && at + count <= dw,
                     "copyColumns: \(count) columns from \(from) of \(source.shape) into \(at) of \(destination.shape)")
        let total = n * count
        if total == 0 { return }
        elementwise("loft_copy_columns", total,
                    [.pointer(f32(source, "copyColumns")), .long(sw), .long(from),
                     .pointer(f32(destination, "copyColumns")), .long(dw), .long(at), .long(count), .long(total)])
    }

    public func gatherRows(_ source: Tensor, rows: [Int32], scales: [Float]?, into destination: Tensor) {
        precondition(destination.rowSize == source.rowSize && destination.rows == rows.count && (scales?.count ?? rows.count) == rows.count,
                     "gatherRows: \(rows.count) rows of \(source.shape) into \(destination.shape)")
        rowsKernel("loft_gather_rows", source, rows, scales, destination)
    }

    public func scatterAddRows(_ source: Tensor, rows: [Int32], scales: [Float]?, into destination: Tensor) {
        precondition(destination.rowSize == source.rowSize && source.rows == rows.count && (scales?.count ?? rows.count) == rows.count,
                     "scatterAddRows: \(source.shape) into \(rows.count) rows of \(destination.shape)")
        rowsKernel("loft_scatter_add_rows", source, rows, scales, destination)
    }

    private func rowsKernel(_ name: String, _ source: Tensor, _ rows: [Int32], _ scales: [Float]?, _ destination: Tensor) {
        let total = rows.count * source.rowSize
        if total == 0 { return }
        let indices = gpu.temporary(rows), factors = scales.map { gpu.temporary($0) }
        elementwise(name, total, [.pointer(f32(source, name)), .pointer(UInt64(UInt(bitPattern: indices.pointer))),
                                  .pointer(factors.map { UInt64(UInt(bitPattern: $0.pointer)) } ?? 0),
                                  .pointer(f32(destination, name)), .long(source.rowSize), .long(total)])
        withExtendedLifetime((indices, factors)) {}
    }

    public func softcap(_ x: Tensor, cap: Float) {
        elementwise("loft_softcap", x.count, [.pointer(f32(x, "softcap")), .float(cap), .long(x.count)])
    }

    public func softcapBackward(_ dy: Tensor, capped: Tensor, cap: Float) {
        precondition(dy.count == capped.count, "softcapBackward: \(dy.shape) and \(capped.shape)")
        elementwise("loft_softcap_backward", dy.count,
                    [.pointer(f32(dy, "softcapBackward")), .pointer(f32(capped, "softcapBackward")), .float(cap), .long(dy.count)])
    }

    /// out = act(gate) · up with kernel `loft_<name>`.
    private func gated(_ name: String, _ gate: Tensor, _ up: Tensor, _ out: Tensor) {
        precondition(gate.count == up.count && gate.count == out.count, "\(name): \(gate.shape), \(up.shape) into \(out.shape)")
        elementwise("loft_\(name)", out.count, [.pointer(f32(gate, name)), .pointer(f32(up, name)), .pointer(f32(out, name)), .long(out.count)])
    }

    /// The gradients with kernel `loft_<name>_backward`.
    private func gatedBackward(_ name: String, _ dOut: Tensor, _ gate: Tensor, _ up: Tensor, _ dGate: Tensor, _ dUp: Tensor) {
        let what = name + "Backward"
        precondition(dOut.count == gate.count && gate.count == up.count && dGate.count == gate.count && dUp.count == gate.count,
                     "\(what): shapes disagree")
        elementwise("loft_\(name)_backward", dOut.count,
                    [.pointer(f32(dOut, what)), .pointer(f32(gate, what)), .pointer(f32(up, what)),
                     .pointer(f32(dGate, what)), .pointer(f32(dUp, what)), .long(dOut.count)])
    }

    public func add(_ a: Tensor, _ b: Tensor, into y: Tensor) {
        precondition(a.count == b.count && a.count == y.count, "add: \(a.shape) + \(b.shape) into \(y.shape)")
        elementwise("loft_add", y.count, [.pointer(f32(a, "add")), .pointer(f32(b, "add")), .pointer(f32(y, "add")), .long(y.count)])
    }

    public func axpy(_ alpha: Float, _ x: Tensor, _ y: Tensor) {
        precondition(x.count == y.count, "axpy: \(x.shape) into \(y.shape)")
        elementwise("loft_axpy", y.count, [.float(alpha), .pointer(f32(x, "axpy")), .pointer(f32(y, "axpy")), .long(y.count)])
    }

    public func scale(_ x: Tensor, by alpha: Float) {
        elementwise("loft_scale", x.count, [.pointer(f32(x, "scale")), .float(alpha), .long(x.count)])
    }

    public func scaleColumns(_ x: Tensor, by scales: Tensor, into y: Tensor, accumulate: Bool) {
        let m = scales.count
        precondition(m > 0 && x.count == y.count && x.count % m == 0, "scaleColumns: \(x.shape) ⊙ \(scales.shape) into \(y.shape)")
        elementwise("loft_scale_columns", y.count, [.pointer(f32(x, "scaleColumns")), .pointer(f32(scales, "scaleColumns")),
                                                    .pointer(f32(y, "scaleColumns")), .long(x.count / m), .int(m), .int(accumulate ? 1 : 0)])
    }

    public func columnDots(_ a: Tensor, _ b: Tensor, into out: Tensor, accumulate: Bool) {
        let m = out.count
        precondition(m > 0 && a.count == b.count && a.count % m == 0, "columnDots: \(a.shape) · \(b.shape) into \(out.shape)")
        gpu.launch("loft_column_dots", grid: ((m + 255) / 256, 1, 1), block: 256,
                   [.pointer(f32(a, "columnDots")), .pointer(f32(b, "columnDots")), .pointer(f32(out, "columnDots")),
                    .long(a.count / m), .int(m), .int(accumulate ? 1 : 0)])
    }

    public func multiply(_ a: Tensor, _ b: Tensor, into y: Tensor) {
        precondition(a.count == b.count && a.count == y.count, "multiply: \(a.shape) ⊙ \(b.shape) into \(y.shape)")
        elementwise("loft_multiply", y.count, [.pointer(f32(a, "multiply")), .pointer(f32(b, "multiply")), .pointer(f32(y, "multiply")), .long(y.count)])
    }

    public func dropoutMask(_ mask: Tensor, probability p: Float, seed: UInt64) {
        elementwise("loft_dropout_mask", mask.count,
                    [.pointer(f32(mask, "dropoutMask")), .long(mask.count), .float(p), .float(1 / (1 - p)), .uint64(seed)])
    }

    // MARK: embedding

    public func embedding(ids: [Int32], table: Tensor, into out: Tensor) {
        let d = table.rowSize
        precondition(out.count == ids.count * d, "embedding: \(ids.count) ids × \(d) into \(out.shape)")
        for id in ids { precondition(id >= 0 && Int(id) < table.rows, "token id \(id) outside the vocabulary of \(table.rows)") }
        let idBuffer = gpu.temporary(ids)
        elementwise("loft_embedding", ids.count * d,
                    [.pointer(UInt64(UInt(bitPattern: idBuffer.pointer))), .pointer(f32(table, "embedding")), .pointer(f32(out, "embedding")),
                     .long(ids.count), .int(d)])
        withExtendedLifetime(idBuffer) {}
    }

    public func embeddingBackward(ids: [Int32], dOut: Tensor, dTable: Tensor) {
        let d = dTable.rowSize
        precondition(dOut.count == ids.count * d, "embeddingBackward: \(ids.count) ids × \(d) from \(dOut.shape)")
        for id in ids { precondition(id >= 0 && Int(id) < dTable.rows, "token id \(id) outside the vocabulary of \(dTable.rows)") }
        let idBuffer = gpu.temporary(ids)
        elementwise("loft_embedding_backward", ids.count * d,
                    [.pointer(UInt64(UInt(bitPattern: idBuffer.pointer))), .pointer(f32(dOut, "embeddingBackward")),
                     .pointer(f32(dTable, "embeddingBackward")), .long(ids.count), .int(d)])
        withExtendedLifetime(idBuffer) {}
    }

    // MARK: loss

    public func crossEntropy(logits: Tensor, labels: [Int32], dLogits: Tensor?, gradScale: Float) -> Double {
        let v = logits.rowSize
        let n = logits.rows
        precondition(labels.count == n, "crossEntropy: \(labels.count) labels for \(n) rows")
        for l in labels { precondition(l < v, "label \(l) outside the vocabulary of \(v)") }
        if n == 0 { return 0 }
        let labelBuffer = gpu.temporary(labels)
        let rowLoss = uninitialized([n])
        gpu.launch("loft_cross_entropy", grid: (n, 1, 1), block: 256,
                   [.pointer(f32(logits, "crossEntropy")), .pointer(UInt64(UInt(bitPattern: labelBuffer.pointer))),
                    .pointer(dLogits.map { f32($0, "crossEntropy dLogits") } ?? 0), .pointer(ptr(rowLoss)), .long(n), .int(v), .float(gradScale)])
        withExtendedLifetime(labelBuffer) {}
        return download(rowLoss).reduce(0.0) { $0 + Double($1) }
    }

    // MARK: optimiser

    public func adamW(param: Tensor, grad: Tensor, m: Tensor, v: Tensor, hyper h: AdamWHyper) {
        precondition(param.count == grad.count && m.count == param.count && v.count == param.count, "adamW: shapes disagree")
        let decay = 1 - h.lr * h.weightDecay
        let bc1 = 1 - Foundation.pow(h.beta1, Float(h.step))
        let bc2Sqrt = (1 - Foundation.pow(h.beta2, Float(h.step))).squareRoot()
        elementwise("loft_adamw", param.count,
                    [.pointer(f32(param, "adamW")), .pointer(f32(grad, "adamW")), .pointer(f32(m, "adamW")), .pointer(f32(v, "adamW")),
                     .long(param.count), .float(decay), .float(h.beta1), .float(h.beta2), .float(h.eps), .float(h.lr / bc1), .float(bc2Sqrt)])
    }

    public func sumOfSquares(_ x: Tensor) -> Double {
        let n = x.count
        if n == 0 { return 0 }
        let blocks = min((n + 255) / 256, 1024)
        let partials = uninitialized([blocks * 2])  // doubles, 8 bytes each
        gpu.launch("loft_sum_of_squares", grid: (blocks, 1, 1), block: 256,
                   [.pointer(f32(x, "sumOfSquares")), .long(n), .pointer(ptr(partials))])
        var host = [Double](repeating: 0, count: blocks)
        host.withUnsafeMutableBytes { gpu.copyToHost($0.baseAddress!, ptr(partials), bytes: $0.count) }
        return host.reduce(0, +)
    }
}
