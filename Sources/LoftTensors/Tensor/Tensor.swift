import Foundation

/// Where a tensor's bytes live.
public enum Device: Sendable, Equatable, CustomStringConvertible {
    case cpu
    case cuda(Int)

    public var description: String {
        switch self {
        case .cpu: return "cpu"
        case .cuda(let i): return "cuda:\(i)"
        }
    }
}

/// A block of memory owned by one backend. CPU storage is either allocated
/// (64-byte aligned, for SIMD and BLAS) or borrowed from a memory-mapped file,
/// in which case `owner` keeps the mapping alive.
public final class Storage: @unchecked Sendable {
    public let pointer: UnsafeMutableRawPointer
    public let byteCount: Int
    public let device: Device
    private let owner: AnyObject?
    private let allocated: Bool
    /// Bytes mapped with mmap (0 when the memory came from malloc).
    private let mappedBytes: Int

    /// Buffers at least this large are mapped straight from the kernel, and
    /// when freed go to `CPUBufferPool` (which unmaps them when they are not
    /// reused). From malloc, glibc serves them from a heap whose freed holes
    /// (sized for the previous micro-batch) stay resident, so peak RSS drifts
    /// up step after step (measured: 1927 MiB instead of 1692 over two steps
    /// of a SmolLM2 run) and the memory plan could not predict it.
    public static let mmapThreshold = 256 << 10

    /// Fresh CPU memory, zeroed unless the caller is about to overwrite all of it.
    public init(cpuBytes: Int, zeroed: Bool = true) {
        let n = max(cpuBytes, 64)
        var mapped = 0
        let sizeClass = CPUBufferPool.sizeClass(n)
        if n >= Self.mmapThreshold, let p = CPUBufferPool.shared.take(sizeClass, using: n) {
            pointer = p  // a buffer of this size class freed earlier
            if zeroed { p.initializeMemory(as: UInt8.self, repeating: 0, count: n) }
            mapped = sizeClass
        } else if n >= Self.mmapThreshold, let p = Self.mapZeroed(sizeClass) {
            pointer = p  // page-aligned and already zero (beyond n, never touched)
            mapped = sizeClass
        } else {
            pointer = UnsafeMutableRawPointer.allocate(byteCount: n, alignment: 64)
            if zeroed { pointer.initializeMemory(as: UInt8.self, repeating: 0, count: n) }
        }
        mappedBytes = mapped
        byteCount = cpuBytes
        device = .cpu
        owner = nil
        allocated = true
    }

    /// Memory that belongs to someone else (a memory map, a device allocation);
    /// `owner` is retained for as long as this storage lives.
    public init(borrowing pointer: UnsafeMutableRawPointer, byteCount: Int, device: Device, owner: AnyObject?) {
        self.pointer = pointer
        self.byteCount = byteCount
        self.device = device
        self.owner = owner
        self.allocated = false
        self.mappedBytes = 0
    }

    /// n zeroed bytes from the kernel, page-aligned. (Transparent huge pages
    /// were tried: with the buffer pool the page faults they save are rare,
    /// and a 2 MiB page faulted in by one touch near a buffer's end counted
    /// untouched memory in the RSS the memory plan predicts.)
    static func mapZeroed(_ n: Int) -> UnsafeMutableRawPointer? {
        let p = mmap(nil, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        return p == MAP_FAILED ? nil : p
    }

    deinit {
        if mappedBytes > 0 { CPUBufferPool.shared.give(pointer, bytes: mappedBytes, used: max(byteCount, 64)) } else if allocated { pointer.deallocate() }
    }
}

/// A dense row-major tensor: a view of `shape` elements of `dtype` starting at
/// `byteOffset` in `storage`. Views share storage; nothing here copies.
public struct Tensor: @unchecked Sendable {
    public let storage: Storage
    public let byteOffset: Int
    public let shape: [Int]
    public let dtype: DType

    public init(storage: Storage, shape: [Int], dtype: DType, byteOffset: Int = 0) {
        precondition(byteOffset + shape.reduce(1, *) * dtype.byteSize <= storage.byteCount,
                     "tensor view \(shape) \(dtype) at \(byteOffset) exceeds its storage of \(storage.byteCount) bytes")
        self.storage = storage
        self.shape = shape
        self.dtype = dtype
        self.byteOffset = byteOffset
    }

    public var count: Int { shape.reduce(1, *) }
    public var rank: Int { shape.count }
    public var device: Device { storage.device }
    public var byteCount: Int { count * dtype.byteSize }

    /// Elements per leading index (the product of all dimensions but the first).
    public var rowSize: Int { shape.dropFirst().reduce(1, *) }
    public var rows: Int { shape.first ?? 1 }

    public var rawPointer: UnsafeMutableRawPointer { storage.pointer + byteOffset }

    /// The f32 elements. Only for CPU tensors of dtype f32.
    public var floats: UnsafeMutablePointer<Float> {
        precondition(dtype == .f32 && device == .cpu, "floats of a \(dtype) tensor on \(device)")
        return rawPointer.assumingMemoryBound(to: Float.self)
    }

    /// The same bytes with another shape of the same element count.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        precondition(newShape.reduce(1, *) == count, "cannot reshape \(shape) to \(newShape)")
        return Tensor(storage: storage, shape: newShape, dtype: dtype, byteOffset: byteOffset)
    }

    /// Rows `range` of the leading dimension, as a view.
    public func rows(_ range: Range<Int>) -> Tensor {
        precondition(range.lowerBound >= 0 && range.upperBound <= rows, "rows \(range) of \(shape)")
        var s = shape
        s[0] = range.count
        return Tensor(storage: storage, shape: s, dtype: dtype,
                      byteOffset: byteOffset + range.lowerBound * rowSize * dtype.byteSize)
    }

    /// A new CPU f32 tensor holding `values`.
    public static func cpu(_ values: [Float], shape: [Int]) -> Tensor {
        precondition(values.count == shape.reduce(1, *), "\(values.count) values for shape \(shape)")
        let t = Tensor(storage: Storage(cpuBytes: values.count * 4), shape: shape, dtype: .f32)
        values.withUnsafeBufferPointer { t.floats.update(from: $0.baseAddress!, count: values.count) }
        return t
    }

    /// A new CPU tensor whose contents are undefined: for outputs that are
    /// written whole before they are read (loading weights, say).
    public static func uninitialized(_ shape: [Int], dtype: DType = .f32) -> Tensor {
        Tensor(storage: Storage(cpuBytes: shape.reduce(1, *) * dtype.byteSize, zeroed: false), shape: shape, dtype: dtype)
    }

    /// A new zeroed CPU tensor.
    public static func zeros(_ shape: [Int], dtype: DType = .f32) -> Tensor {
        Tensor(storage: Storage(cpuBytes: shape.reduce(1, *) * dtype.byteSize), shape: shape, dtype: dtype)
    }

    /// The elements as f32, for tests and printing. CPU only.
    public func toArray() -> [Float] {
        precondition(device == .cpu, "toArray of a tensor on \(device): download it through its backend")
        switch dtype {
        case .f32: return Array(UnsafeBufferPointer(start: floats, count: count))
        case .bf16:
            let p = rawPointer.assumingMemoryBound(to: UInt16.self)
            return (0 ..< count).map { BFloat16.toFloat(p[$0]) }
        case .f16:
            let p = rawPointer.assumingMemoryBound(to: Float16.self)
            return (0 ..< count).map { Float(p[$0]) }
        case .i32:
            let p = rawPointer.assumingMemoryBound(to: Int32.self)
            return (0 ..< count).map { Float(p[$0]) }
        }
    }
}
