import Foundation
import LoftEngine

/// The events of one HTTP request's engine requests (a completions batch has
/// one per prompt), merged into one stream and tagged with the prompt's index.
/// Cancelling the run (the client went away, or a write failed) terminates
/// every engine stream, which the engine turns into a cancel within one step.
final class EngineRun: @unchecked Sendable {
    struct Tagged: Sendable { let part: Int; let event: GenerationEvent }

    let events: AsyncThrowingStream<Tagged, Error>
    private let lock = NSLock()
    private var pumps: [Task<Void, Never>] = []
    private var cancelled = false
    private var done = false

    init(_ streams: [AsyncThrowingStream<GenerationEvent, Error>]) {
        let (events, continuation) = AsyncThrowingStream<Tagged, Error>.makeStream()
        self.events = events
        let remaining = Remaining(streams.count)
        var tasks: [Task<Void, Never>] = []
        for (part, stream) in streams.enumerated() {
            tasks.append(Task {
                do {
                    for try await event in stream { continuation.yield(Tagged(part: part, event: event)) }
                    if remaining.decrement() { continuation.finish() }
                } catch {
                    continuation.finish(throwing: error)
                }
            })
        }
        lock.withLock { pumps = tasks }
        continuation.onTermination = { [weak self] termination in
            if case .cancelled = termination { self?.cancel() }   // not on a normal finish
        }
    }

    func cancel() {
        let tasks: [Task<Void, Never>] = lock.withLock {
            cancelled = true
            return pumps
        }
        for t in tasks { t.cancel() }
    }

    var wasCancelled: Bool { lock.withLock { cancelled } }

    /// The handler consumed every event: a later disconnect has nothing to cancel.
    func markDone() { lock.withLock { done = true } }

    /// Cancels a run still going; says whether it was.
    func cancelIfRunning() -> Bool {
        guard lock.withLock({ !done && !cancelled }) else { return false }
        cancel()
        return true
    }

    deinit { for t in pumps { t.cancel() } }

    private final class Remaining: @unchecked Sendable {
        private let lock = NSLock()
        private var count: Int
        init(_ count: Int) { self.count = count }
        func decrement() -> Bool { lock.withLock { count -= 1; return count == 0 } }
    }
}
