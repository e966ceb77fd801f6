import Foundation
import LoftEngine

/// The engine the server serves, once it is there: the server listens (and
/// answers /health and 503s) while the model loads and warms up.
public final class EngineSlot: @unchecked Sendable {
    private let lock = NSLock()
    private var engine: (any GenerationEngine)?
    private var warm = false
    private var failure: String?

    public init() {}

    /// A slot holding an engine that is already loaded and warmed up.
    public convenience init(ready engine: any GenerationEngine) {
        self.init()
        install(engine)
        markReady()
    }

    public func install(_ engine: any GenerationEngine) { lock.withLock { self.engine = engine } }
    /// After the warm-up request: /health turns 200 and requests are taken.
    public func markReady() { lock.withLock { warm = true } }
    public func markFailed(_ message: String) { lock.withLock { failure = message } }

    public var isReady: Bool { lock.withLock { warm && failure == nil && (engine?.isReady ?? false) } }
    public var failureMessage: String? { lock.withLock { failure } }
    var current: (any GenerationEngine)? { lock.withLock { engine } }

    /// The engine, or 503 with Retry-After while it loads.
    func ready() throws -> any GenerationEngine {
        let (e, warm, failure) = lock.withLock { (engine, self.warm, self.failure) }
        if let failure { throw APIError(.serviceUnavailable, "the model failed to load: \(failure)", code: "model_load_failed") }
        guard let e, warm, e.isReady else { throw APIError.from(EngineError.notReady) }
        return e
    }
}
