import Foundation

/// How the next token is chosen from logits. Greedy when temperature is 0.
public struct SamplingOptions: Sendable, Equatable {
    public var temperature: Float = 0
    public var topK: Int = 0
    public var topP: Float = 1
    /// CTRL-style penalty on tokens already in the context (1 = off), as transformers applies it.
    public var repetitionPenalty: Float = 1
    public var seed: UInt64 = 0

    public init(temperature: Float = 0, topK: Int = 0, topP: Float = 1, repetitionPenalty: Float = 1, seed: UInt64 = 0) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.repetitionPenalty = repetitionPenalty
        self.seed = seed
    }

    public static let greedy = SamplingOptions()
}

/// A seeded PCG-style generator, so `--seed` reproduces a sample exactly.
public struct SamplerRandom: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed &* 6364136223846793005 &+ 1442695040888963407 }
    public mutating func next() -> UInt64 {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        var x = state
        x ^= x >> 33; x &*= 0xff51afd7ed558ccd; x ^= x >> 33; x &*= 0xc4ceb9fe1a85ec53; x ^= x >> 33
        return x
    }
}

/// Picks tokens from logits with transformers' order of processing:
/// repetition penalty, temperature, top-k, top-p, then sampling.
public struct Sampler: Sendable {
    public let options: SamplingOptions
    private var random: SamplerRandom

    public init(_ options: SamplingOptions) {
        self.options = options
        random = SamplerRandom(seed: options.seed)
    }

    public mutating func next(logits input: UnsafeBufferPointer<Float>, context: [Int32]) -> Int32 {
        var logits = Array(input)
        if options.repetitionPenalty != 1 {
            for id in Set(context) where Int(id) < logits.count {
                let l = logits[Int(id)]
                logits[Int(id)] = l < 0 ? l * options.repetitionPenalty : l / options.repetitionPenalty
            }
        }
        if options.temperature <= 0 {
            var best = 0
            for i in 1 ..< logits.count where logits[i] > logits[best] { best = i }
            return Int32(best)
        }
        for i in logits.indices { logits[i] /= options.temperature }
        var order = Array(logits.indices).sorted { logits[$0] > logits[$1] }
        if options.topK > 0 && options.topK < order.count { order = Array(order[..<options.topK]) }
        let mx = logits[order[0]]
        var probs = order.map { Foundation.exp(Double(logits[$0] - mx)) }
        let total = probs.reduce(0, +)
        probs = probs.map { $0 / total }
        if options.topP < 1 {
            // Keep the smallest prefix whose mass reaches top_p (at least one token).
            var mass = 0.0, keep = 0
            while keep < probs.count { mass += probs[keep]; keep += 1; if mass >= Double(options.topP) { break } }
            order = Array(order[..<keep])
            probs = Array(probs[..<keep])
            let kept = probs.reduce(0, +)
            probs = probs.map { $0 / kept }
        }
        var u = Double.random(in: 0 ..< 1, using: &random)
        for (i, p) in probs.enumerated() {
            u -= p
            if u < 0 { return Int32(order[i]) }
        }
        return Int32(order[order.count - 1])
    }
}
