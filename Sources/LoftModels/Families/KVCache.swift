import LoftTensors

/// Keys and values of every layer for the tokens seen so far, preallocated
/// for `capacity` tokens so generation allocates nothing per step.
public final class KVCache: @unchecked Sendable {
    public let capacity: Int
    public private(set) var length = 0
    private var keys: [Tensor]
    private var values: [Tensor]

    public init(config: ModelConfig, capacity: Int, backend: Backend) {
        self.capacity = capacity
        let width = config.kvHeads * config.headDim
        keys = (0 ..< config.layers).map { _ in backend.zeros([capacity, width], dtype: .f32) }
        values = (0 ..< config.layers).map { _ in backend.zeros([capacity, width], dtype: .f32) }
    }

    /// Writes this step's k and v after the cached ones and returns views of
    /// all keys and values so far, this step's included.
    func append(layer: Int, k: Tensor, v: Tensor, backend: Backend) -> (Tensor, Tensor) {
        let n = k.rows
        precondition(length + n <= capacity, "KV cache of \(capacity) tokens is full")
        backend.copy(k, into: keys[layer].rows(length ..< length + n))
        backend.copy(v, into: values[layer].rows(length ..< length + n))
        return (keys[layer].rows(0 ..< length + n), values[layer].rows(0 ..< length + n))
    }

    func advance(by n: Int) { length += n }

    /// Forgets everything (a new conversation).
    public func reset() { length = 0 }
}
