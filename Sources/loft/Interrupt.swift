import Foundation

/// Ctrl-C (or the UI's stop, which sends SIGINT) during training: the first
/// finishes the current step, writes a checkpoint and exits; a second quits
/// at once. The handler runs on a queue of its own (never waiting behind the
/// compute threads), and the second quit is `_exit`: `exit` would run the
/// process's exit handlers (OpenBLAS's among them, which waits for its
/// threads) while the training threads are still busy, and can hang there.
enum Interrupt {
    private static let queue = DispatchQueue(label: "loft-interrupt")
    nonisolated(unsafe) private static var source: DispatchSourceSignal?

    static func onFirst(_ requestStop: @escaping @Sendable () -> Void) {
        signal(SIGINT, SIG_IGN)
        let s = DispatchSource.makeSignalSource(signal: SIGINT, queue: queue)
        nonisolated(unsafe) var seen = false
        s.setEventHandler {
            if seen { _exit(130) }
            seen = true
            requestStop()
            writeErr("\nstopping after this step (Ctrl-C again to quit at once)…")
        }
        s.resume()
        source = s
    }
}
