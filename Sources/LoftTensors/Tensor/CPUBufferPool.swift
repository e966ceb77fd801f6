import Foundation

/// Large CPU buffers freed by tensors, kept for the next tensor of the same
/// size instead of going back to the kernel.
///
/// A training step allocates the same activations, in the same sizes, every
/// step. Mapped fresh each time, every page of them faults on first touch and
/// the kernel zeroes it: `perf` put the kernel's page clearing at 17 % of a
/// SmolLM2 step's CPU time. Reused, a buffer costs one memset when the
/// caller asks for zeros, and nothing when it does not.
///
/// Sizes are rounded up to classes an eighth of a power of two apart (the
/// tail past the request is never touched, so it costs address space, not
/// memory), and buffers are matched by class, so a loop whose micro-batches
/// vary a little in length still finds its buffers again.
///
/// The pool is kept from raising the process's peak memory: before a buffer
/// is mapped fresh (a miss), the oldest cached buffers whose resident pages
/// add up to its size are unmapped first, so live plus cached memory only
/// grows while nothing is cached, up to the peak a process without the pool
/// would reach (plus whatever memory other than tensors it allocates while
/// the pool holds buffers). `limitBytes` caps what it holds besides (the oldest buffers
/// go first); `LOFT_CPU_POOL_MB` sets that cap (0 turns the pool off).
public final class CPUBufferPool: @unchecked Sendable {
    public static let shared = CPUBufferPool(limitBytes: defaultLimit())

    private let lock = NSLock()
    /// Free buffers, oldest first: the class size, and how much of it its
    /// last tensor used (the pages that may be resident).
    private var free: [(bytes: Int, pointer: UnsafeMutableRawPointer, used: Int)] = []
    public private(set) var cachedBytes = 0
    public var limitBytes: Int {
        get { lock.withLock { limit } }
        set { lock.withLock { limit = max(0, newValue); evict(keeping: limit) } }
    }
    private var limit: Int

    init(limitBytes: Int) { limit = limitBytes }

    /// An eighth of physical memory, at most 4 GiB: more than a SmolLM2 step's
    /// activations, little beside a machine's memory.
    static func defaultLimit() -> Int {
        if let mb = ProcessInfo.processInfo.environment["LOFT_CPU_POOL_MB"].flatMap({ Int($0) }) { return max(0, mb) << 20 }
        return min(Int(ProcessInfo.processInfo.physicalMemory / 8), 4 << 30)
    }

    /// `bytes` rounded up to its class: a multiple of an eighth of the power
    /// of two at or below it (at most 12.5 % more), and of the page size.
    static func sizeClass(_ bytes: Int) -> Int {
        let page = 4096
        guard bytes > page else { return page }
        let top = Int.bitWidth - 1 - (bytes - 1).leadingZeroBitCount  // floor(log2(bytes - 1))
        let step = max(page, (1 << top) / 8)
        return (bytes + step - 1) / step * step
    }

    /// A free buffer of class `bytes` for a tensor of `using` bytes, the most
    /// recently freed (its pages are the likeliest still in cache); on a miss,
    /// nil, after unmapping the oldest cached buffers that add up to `bytes`,
    /// so the fresh mapping the caller makes instead does not add to the peak.
    /// Pages past `using` that the buffer's last tensor touched are handed
    /// back to the kernel, so a smaller tensor in the class holds no more
    /// memory than a fresh mapping would.
    func take(_ bytes: Int, using: Int) -> UnsafeMutableRawPointer? {
        let found: (UnsafeMutableRawPointer, Int)? = lock.withLock {
            if let i = free.lastIndex(where: { $0.bytes == bytes }) {
                cachedBytes -= bytes
                let e = free.remove(at: i)
                return (e.pointer, e.used)
            }
            evictResident(atLeast: bytes)
            return nil
        }
        guard let (pointer, used) = found else { return nil }
        let keep = (using + 4095) & ~4095
        if used > keep {
            #if os(Linux)
            _ = madvise(pointer + keep, used - keep, MADV_DONTNEED)
            #endif
        }
        return pointer
    }

    /// Keeps a mapped buffer (class `bytes`, of which its tensor used `used`)
    /// for reuse, or unmaps it when it does not fit under the cap.
    func give(_ pointer: UnsafeMutableRawPointer, bytes: Int, used: Int) {
        let unmapNow: Bool = lock.withLock {
            if bytes > limit { return true }
            evict(keeping: limit - bytes)
            free.append((bytes, pointer, (used + 4095) & ~4095))
            cachedBytes += bytes
            return false
        }
        if unmapNow { munmap(pointer, bytes) }
    }

    /// Unmaps every free buffer (a long-lived process calls this after a phase
    /// whose sizes will not come back, such as training before serving).
    public func releaseAll() { lock.withLock { evict(keeping: 0) } }

    /// Unmaps the oldest buffers until their resident pages (what their last
    /// tensors used) add up to `bytes`, or none is left. Lock held.
    private func evictResident(atLeast bytes: Int) {
        var resident = 0
        evictOldest { entry in
            defer { resident += entry.used }
            return resident < bytes
        }
    }

    /// Unmaps the oldest buffers until at most `keep` bytes stay. Lock held.
    private func evict(keeping keep: Int) {
        evictOldest { _ in cachedBytes > keep }
    }

    /// Unmaps buffers oldest first while `more(next)` says so. Lock held.
    private func evictOldest(while more: ((bytes: Int, pointer: UnsafeMutableRawPointer, used: Int)) -> Bool) {
        var drop = 0
        while drop < free.count && more(free[drop]) {
            munmap(free[drop].pointer, free[drop].bytes)
            cachedBytes -= free[drop].bytes
            drop += 1
        }
        if drop > 0 { free.removeFirst(drop) }
    }
}
