import CLoftCUDA
import Foundation
import LoftTensors

/// One argument of a kernel launch, stored as the kernel's C type.
enum KernelArgument {
    case pointer(UInt64)
    case int32(Int32)
    case int64(Int64)
    case uint64(UInt64)
    case float(Float)

    static func int(_ v: Int) -> KernelArgument { .int32(Int32(v)) }
    static func long(_ v: Int) -> KernelArgument { .int64(Int64(v)) }
}

/// A device context with Loft's kernels loaded, its memory pool and its
/// cuBLASLt handle. Work goes to the legacy default stream, so launches,
/// copies and cuBLASLt calls run in the order they were issued.
final class CUDADevice: @unchecked Sendable {
    let driver: loft_cuda_driver
    let info: CUDADeviceInfo
    let context: loft_cu_context
    private var functions: [String: loft_cu_function] = [:]
    let pool: DeviceMemoryPool
    /// Synchronize and check after every launch (LOFT_CUDA_SYNC=1, and the
    /// self-test): an asynchronous fault then names the kernel that caused it.
    var synchronizeEachLaunch = ProcessInfo.processInfo.environment["LOFT_CUDA_SYNC"] == "1"
    /// How each module was obtained, for the self-test's report.
    private(set) var images: [KernelCompiler.Image] = []

    init(index: Int) throws {
        let probe = CUDAProbe.run()
        if let problem = probe.problem { throw CUDAError(problem) }
        guard index >= 0 && index < probe.devices.count else {
            throw CUDAError("there is no CUDA device \(index): this machine has \(probe.devices.count); pick one of 0..<\(probe.devices.count)")
        }
        driver = try CUDALibraries.driver.get().api
        info = probe.devices[index]
        var device: loft_cu_device = 0
        try driver.check(driver.cuDeviceGet(&device, Int32(index)), "cuDeviceGet(\(index))")
        var ctx: loft_cu_context?
        try driver.check(driver.cuDevicePrimaryCtxRetain(&ctx, device), "cuDevicePrimaryCtxRetain")
        guard let ctx else { throw CUDAError("cuDevicePrimaryCtxRetain returned no context") }
        context = ctx
        try driver.check(driver.cuCtxSetCurrent(ctx), "cuCtxSetCurrent")
        pool = DeviceMemoryPool(driver: driver, context: ctx)
        let compiler = try KernelCompiler()
        for module in KernelSources.all {
            let image = try compiler.compile(module, arch: info.arch)
            images.append(image)
            var loaded: loft_cu_module?
            var bytes = image.bytes
            if !image.isCUBIN { bytes.append(0) } // PTX is loaded as a C string
            try bytes.withUnsafeBytes { p in
                try driver.check(driver.cuModuleLoadData(&loaded, p.baseAddress!), "loading kernel module \(module.name) (\(image.target))")
            }
            for name in module.kernels {
                var f: loft_cu_function?
                try driver.check(driver.cuModuleGetFunction(&f, loaded, name), "finding kernel \(name) in module \(module.name)")
                functions[name] = f
            }
        }
    }

    /// The context is per thread in the driver; Loft's callers may come from
    /// any thread, so each entry point makes it current (a cheap TLS store).
    @inline(__always)
    func makeCurrent() {
        _ = driver.cuCtxSetCurrent(context)
    }

    func fail(_ what: String, _ result: loft_cu_result) -> Never {
        fatalError("CUDA: \(what) failed: \(driver.describe(result))")
    }

    @inline(__always)
    func checked(_ result: loft_cu_result, _ what: @autoclosure () -> String) {
        if result != 0 { fail(what(), result) }
    }

    func synchronize() {
        makeCurrent()
        checked(driver.cuCtxSynchronize(), "cuCtxSynchronize")
    }

    /// Launches kernel `name` on the default stream.
    func launch(_ name: String, grid: (Int, Int, Int), block: Int, blockY: Int = 1, sharedBytes: Int = 0, _ args: [KernelArgument]) {
        guard let f = functions[name] else { fatalError("CUDA: kernel \(name) is not loaded") }
        if grid.0 == 0 || grid.1 == 0 || grid.2 == 0 { return }
        makeCurrent()
        let storage = UnsafeMutableRawPointer.allocate(byteCount: max(args.count, 1) * 8, alignment: 8)
        defer { storage.deallocate() }
        var params: [UnsafeMutableRawPointer?] = []
        for (i, arg) in args.enumerated() {
            let slot = storage + i * 8
            switch arg {
            case .pointer(let v): slot.storeBytes(of: v, as: UInt64.self)
            case .int32(let v): slot.storeBytes(of: v, as: Int32.self)
            case .int64(let v): slot.storeBytes(of: v, as: Int64.self)
            case .uint64(let v): slot.storeBytes(of: v, as: UInt64.self)
            case .float(let v): slot.storeBytes(of: v, as: Float.self)
            }
            params.append(slot)
        }
        let result = params.withUnsafeMutableBufferPointer { p in
            driver.cuLaunchKernel(f, UInt32(grid.0), UInt32(grid.1), UInt32(grid.2), UInt32(block), UInt32(blockY), 1,
                                  UInt32(sharedBytes), nil, p.baseAddress, nil)
        }
        checked(result, "launching \(name) (grid \(grid), block \(block), \(sharedBytes) bytes shared)")
        if synchronizeEachLaunch { checked(driver.cuCtxSynchronize(), "kernel \(name)") }
    }

    /// A grid for a grid-stride loop over n elements.
    static func grid(_ n: Int, block: Int = 256) -> (Int, Int, Int) {
        (max(0, min((n + block - 1) / block, 8192)), 1, 1)
    }

    // MARK: memory

    func copyToDevice(_ dst: UInt64, _ src: UnsafeRawPointer, bytes: Int) {
        if bytes == 0 { return }
        makeCurrent()
        checked(driver.cuMemcpyHtoD(dst, src, bytes), "copying \(bytes) bytes to the GPU")
    }

    func copyToHost(_ dst: UnsafeMutableRawPointer, _ src: UInt64, bytes: Int) {
        if bytes == 0 { return }
        makeCurrent()
        checked(driver.cuMemcpyDtoH(dst, src, bytes), "copying \(bytes) bytes from the GPU")
    }

    /// A device buffer holding `values` (ids, positions, small tables), kept
    /// alive by the returned storage.
    func temporary<T>(_ values: [T]) -> Storage {
        let bytes = values.count * MemoryLayout<T>.stride
        let s = pool.storage(bytes: bytes, device: .cuda(info.index))
        values.withUnsafeBytes { copyToDevice(UInt64(UInt(bitPattern: s.pointer)), $0.baseAddress!, bytes: bytes) }
        return s
    }
}

/// Device memory handed out in size classes and kept for reuse when a tensor
/// dies: a training step makes many short-lived tensors, and cuMemAlloc /
/// cuMemFree synchronize the device. Reuse is safe because all work runs on
/// one stream in issue order.
final class DeviceMemoryPool: @unchecked Sendable {
    let driver: loft_cuda_driver
    let context: loft_cu_context
    private var free: [Int: [UInt64]] = [:]
    private let lock = NSLock()
    private(set) var bytesInUse = 0
    private(set) var bytesCached = 0

    init(driver: loft_cuda_driver, context: loft_cu_context) {
        self.driver = driver
        self.context = context
    }

    /// Requests round up to a power of two up to 1 MiB, then to whole MiB.
    static func sizeClass(_ bytes: Int) -> Int {
        let n = max(bytes, 256)
        if n <= 1 << 20 { return 1 << (Int.bitWidth - (n - 1).leadingZeroBitCount) }
        return (n + (1 << 20) - 1) & ~((1 << 20) - 1)
    }

    func allocate(bytes: Int) -> (UInt64, Int) {
        let size = Self.sizeClass(bytes)
        lock.lock()
        if var list = free[size], let p = list.popLast() {
            free[size] = list
            bytesCached -= size
            bytesInUse += size
            lock.unlock()
            return (p, size)
        }
        lock.unlock()
        _ = driver.cuCtxSetCurrent(context)
        var p: loft_cu_deviceptr = 0
        var result = driver.cuMemAlloc(&p, size)
        if result != 0 {
            // Out of memory with blocks cached: give them back and try once more.
            releaseCached()
            result = driver.cuMemAlloc(&p, size)
        }
        if result != 0 {
            fatalError("CUDA: allocating \(size) bytes failed: \(driver.describe(result)) (\(bytesInUse) bytes in use); use a smaller micro_batch_size or sequence_len, or gradient_checkpointing")
        }
        lock.lock()
        bytesInUse += size
        lock.unlock()
        return (p, size)
    }

    func release(_ pointer: UInt64, size: Int) {
        lock.lock()
        free[size, default: []].append(pointer)
        bytesInUse -= size
        bytesCached += size
        lock.unlock()
    }

    func releaseCached() {
        lock.lock()
        let lists = free
        free = [:]
        bytesCached = 0
        lock.unlock()
        _ = driver.cuCtxSetCurrent(context)
        _ = driver.cuCtxSynchronize()
        for (_, list) in lists { for p in list { _ = driver.cuMemFree(p) } }
    }

    /// Fresh (uninitialized) device storage of at least `bytes`.
    func storage(bytes: Int, device: Device) -> Storage {
        let (p, size) = allocate(bytes: bytes)
        let owner = DeviceAllocation(pool: self, pointer: p, size: size)
        return Storage(borrowing: UnsafeMutableRawPointer(bitPattern: UInt(p))!, byteCount: bytes, device: device, owner: owner)
    }
}

/// Returns its block to the pool when the last tensor using it goes away.
final class DeviceAllocation: @unchecked Sendable {
    let pool: DeviceMemoryPool
    let pointer: UInt64
    let size: Int

    init(pool: DeviceMemoryPool, pointer: UInt64, size: Int) {
        self.pool = pool
        self.pointer = pointer
        self.size = size
    }

    deinit { pool.release(pointer, size: size) }
}
