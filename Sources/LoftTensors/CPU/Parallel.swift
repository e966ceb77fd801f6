import Dispatch
import Foundation

/// Splits 0..<count into one contiguous chunk per core and runs them at once.
/// Small jobs run inline: waking threads costs more than a few thousand flops.
@inline(__always)
func parallelChunks(_ count: Int, minimumPerChunk: Int = 1, _ body: (Range<Int>) -> Void) {
    let cores = CPUBackend.threads
    let chunks = min(cores, max(1, count / max(minimumPerChunk, 1)))
    if chunks <= 1 {
        if count > 0 { body(0 ..< count) }
        return
    }
    DispatchQueue.concurrentPerform(iterations: chunks) { c in
        let lo = count * c / chunks, hi = count * (c + 1) / chunks
        if lo < hi { body(lo ..< hi) }
    }
}

/// Runs `body(i)` for every i in 0..<count, spread over the cores.
@inline(__always)
func parallelFor(_ count: Int, _ body: (Int) -> Void) {
    if count == 1 { body(0); return }
    DispatchQueue.concurrentPerform(iterations: count, execute: body)
}
