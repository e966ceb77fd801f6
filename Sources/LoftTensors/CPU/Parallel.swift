import CLoftKernels
import Dispatch
import Foundation

/// Runs `body(i)` for i in 0..<count on the calling thread and Loft's worker
/// team (`CLoftTeam.h`: workers that spin briefly between jobs, so the next
/// short product starts without a trip through the kernel), on at most
/// `threads` threads. When another thread's job holds the team, GCD runs it.
@inline(__always)
func teamRun(_ count: Int, threads: Int, _ body: (Int) -> Void) {
    let ran = teamEnabled && withoutActuallyEscaping(body) { body -> Bool in
        var job = body
        return withUnsafeMutablePointer(to: &job) { pointer in
            loft_team_run(count, Int32(clamping: threads), { context, index in
                context!.assumingMemoryBound(to: ((Int) -> Void).self).pointee(index)
            }, pointer) != 0
        }
    }
    if !ran { DispatchQueue.concurrentPerform(iterations: count, execute: body) }
}

/// `LOFT_TEAM=0` sends every parallel loop through GCD instead (for comparisons).
let teamEnabled = ProcessInfo.processInfo.environment["LOFT_TEAM"] != "0"

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
    teamRun(chunks, threads: cores) { c in
        let lo = count * c / chunks, hi = count * (c + 1) / chunks
        if lo < hi { body(lo ..< hi) }
    }
}

/// Runs `body(i)` for every i in 0..<count, spread over the cores.
@inline(__always)
func parallelFor(_ count: Int, _ body: (Int) -> Void) {
    if count == 1 { body(0); return }
    teamRun(count, threads: CPUBackend.threads, body)
}
