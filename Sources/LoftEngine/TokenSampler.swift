import Foundation
import LoftInference

/// Chooses one row's next token. Processing order (transformers' and vLLM's):
/// repetition penalty (over prompt and output, CTRL-style), frequency and
/// presence penalties (over the output, OpenAI's definition), the constraint's
/// mask, temperature, top-k, top-p, min-p, then one draw from the row's own
/// seeded generator, so a row samples the same tokens whatever else shares
/// its step. Probabilities are computed in Double.
struct TokenSampler {
    let parameters: SamplingParameters
    private var random: SamplerRandom
    /// How often each token occurs in the output so far.
    private(set) var outputCounts: [Int32: Int] = [:]
    /// Every token of prompt and output (repetition penalty's set).
    private(set) var seen: Set<Int32>

    init(_ parameters: SamplingParameters, seed: UInt64, prompt: [Int32]) {
        self.parameters = parameters
        random = SamplerRandom(seed: seed)
        seen = Set(prompt)
    }

    mutating func accept(_ token: Int32) {
        outputCounts[token, default: 0] += 1
        seen.insert(token)
    }

    /// The logits after penalties and the mask (nil entries of `allowed` = all allowed).
    func adjustedLogits(_ input: UnsafeBufferPointer<Float>, allowed: [Bool]?) -> [Double] {
        var logits = input.map(Double.init)
        let p = parameters
        if p.repetitionPenalty != 1 {
            let r = Double(p.repetitionPenalty)
            for id in seen where Int(id) < logits.count {
                let l = logits[Int(id)]
                logits[Int(id)] = l < 0 ? l * r : l / r
            }
        }
        if p.frequencyPenalty != 0 || p.presencePenalty != 0 {
            for (id, count) in outputCounts where Int(id) < logits.count {
                logits[Int(id)] -= Double(count) * Double(p.frequencyPenalty) + Double(p.presencePenalty)
            }
        }
        if let allowed {
            for i in logits.indices where !allowed[i] { logits[i] = -.infinity }
        }
        return logits
    }

    /// The distribution a sample is drawn from, most likely first (tokens
    /// outside it have probability 0). Nil for greedy decoding.
    func distribution(_ logits: [Double]) -> [(token: Int32, probability: Double)]? {
        let p = parameters
        guard p.temperature > 0 else { return nil }
        let t = Double(p.temperature)
        var order = logits.indices.filter { logits[$0] > -.infinity }
        order.sort { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }
        if order.isEmpty { return [] }
        if p.topK > 0 && p.topK < order.count { order.removeSubrange(p.topK...) }
        let top = logits[order[0]] / t
        var probs = order.map { Foundation.exp(logits[$0] / t - top) }
        var total = probs.reduce(0, +)
        if p.topP < 1 {
            // Keep a token while the mass of the tokens above it is below top_p
            // (transformers' TopPLogitsWarper, at least one token).
            var above = 0.0, keep = 0
            while keep < probs.count && (keep == 0 || above < Double(p.topP) * total) { above += probs[keep]; keep += 1 }
            order.removeSubrange(keep...); probs.removeSubrange(keep...)
            total = probs.reduce(0, +)
        }
        if p.minP > 0 {
            // Relative to the most likely token (MinPLogitsWarper).
            let threshold = Double(p.minP) * probs[0]
            let keep = probs.firstIndex { $0 < threshold } ?? probs.count
            order.removeSubrange(keep...); probs.removeSubrange(keep...)
            total = probs.reduce(0, +)
        }
        return zip(order, probs).map { (Int32($0), $1 / total) }
    }

    /// Picks the next token (without accepting it).
    mutating func sample(_ input: UnsafeBufferPointer<Float>, allowed: [Bool]? = nil) -> Int32 {
        let logits = adjustedLogits(input, allowed: allowed)
        guard let dist = distribution(logits) else {
            var best = 0
            for i in 1 ..< logits.count where logits[i] > logits[best] { best = i }
            return Int32(best)
        }
        var u = Double.random(in: 0 ..< 1, using: &random)
        for (token, prob) in dist {
            u -= prob
            if u < 0 { return token }
        }
        return dist.last?.token ?? 0
    }
}

/// Log-softmax of one row of logits, in Double (the chosen token's and the
/// top alternatives' log-probabilities are read from it).
struct LogSoftmax {
    let logZ: Double
    let logits: UnsafeBufferPointer<Float>

    init(_ logits: UnsafeBufferPointer<Float>) {
        self.logits = logits
        var mx = -Double.infinity
        for l in logits where Double(l) > mx { mx = Double(l) }
        var sum = 0.0
        for l in logits { sum += Foundation.exp(Double(l) - mx) }
        logZ = mx + Foundation.log(sum)
    }

    func logprob(_ token: Int32) -> Double { Double(logits[Int(token)]) - logZ }

    /// The k most likely tokens, most likely first (ties: lower id first).
    func top(_ k: Int) -> [(Int32, Double)] {
        guard k > 0 else { return [] }
        var best: [(Int32, Float)] = []
        best.reserveCapacity(k + 1)
        for (i, l) in logits.enumerated() {
            if best.count == k, let last = best.last, l <= last.1 { continue }
            let at = best.firstIndex { l > $0.1 } ?? best.count
            best.insert((Int32(i), l), at: at)
            if best.count > k { best.removeLast() }
        }
        return best.map { ($0.0, Double($0.1) - logZ) }
    }
}
