import Foundation
import LoftTensors

/// A sparse MLP (Qwen3-MoE, Mixtral): a router picks `topK` of `experts` gated
/// MLPs for each token, and the token's output is the sum of their outputs
/// weighted by the router's probabilities, as transformers computes it:
///
///     p = softmax(x·Rᵀ) (float32), (w, i) = topk(p, k), w /= Σw when normalising,
///     y[t] = Σ_{e ascending} w[t,e] · down_e(silu(gate_e(x_t)) · up_e(x_t)).
///
/// Each expert runs once over the rows routed to it (gathered into rows of
/// their own, then added back weighted). The router is frozen (PEFT never
/// adapts it) but gradients flow through it to x: the probabilities depend on
/// x, so ∂L/∂x includes Rᵀ·∂L/∂(x·Rᵀ) through the top-k renormalisation and
/// the softmax. Experts are frozen too (LoRA adapts the attention and the
/// dense layers, what PEFT's all-linear finds in transformers 5, whose experts
/// are 3-D parameters rather than Linear modules).
public struct MixtureOfExperts {
    /// One expert: a gated MLP of its own.
    public struct Expert {
        public var gate: Linear, up: Linear, down: Linear
    }

    /// The router's weight R [experts, hidden].
    public let router: Tensor
    public var experts: [Expert]
    public let topK: Int
    public let normalize: Bool
    /// Hugging Face names: the block ("mlp", Mixtral's "block_sparse_moe") and
    /// each expert's gate, up and down ("gate_proj"…, Mixtral's "w1", "w3", "w2").
    public let block: String
    public let expertNames: (gate: String, up: String, down: String)

    /// The router weight's name.
    public var routerName: String { "\(block).gate.weight" }

    /// The experts' projections by Hugging Face module path (within the layer).
    public var projections: [(String, Linear)] {
        experts.enumerated().flatMap { e, x in
            [("\(block).experts.\(e).\(expertNames.gate)", x.gate), ("\(block).experts.\(e).\(expertNames.up)", x.up),
             ("\(block).experts.\(e).\(expertNames.down)", x.down)]
        }
    }

    /// Which experts each token takes, with what weight.
    public struct Routing {
        /// Per token: the router's softmax over every expert.
        public var probabilities: [[Float]]
        /// Per token: the chosen experts in topk's order (descending probability) and their weights.
        public var chosen: [[Int]], weights: [[Float]]
        /// Per expert: the tokens routed to it (ascending) and their weights.
        public var tokens: [[Int32]], tokenWeights: [[Float]]
    }

    /// What the backward needs of one forward: the routing, and per expert
    /// its gate and up outputs and its (unweighted) output rows.
    public final class Saved {
        public var routing: Routing?
        public var gate: [Tensor?] = [], up: [Tensor?] = [], output: [Tensor?] = []
        public init() {}
    }

    /// The routing of router logits [n, experts] (host floats).
    public func route(logits: [Float], tokens n: Int) -> Routing {
        let count = experts.count
        var r = Routing(probabilities: [], chosen: [], weights: [], tokens: Array(repeating: [], count: count),
                        tokenWeights: Array(repeating: [], count: count))
        for t in 0 ..< n {
            let row = logits[t * count ..< (t + 1) * count]
            let top = row.max() ?? 0
            let exps = row.map { Foundation.exp($0 - top) }
            let sum = exps.reduce(0, +)
            let p = exps.map { $0 / sum }
            // torch.topk: largest first (ties: the lower index first)
            let order = p.indices.sorted { p[$0] != p[$1] ? p[$0] > p[$1] : $0 < $1 }
            let chosen = Array(order.prefix(topK))
            var w = chosen.map { p[$0] }
            if normalize {
                let s = w.reduce(0, +)
                w = w.map { $0 / s }
            }
            r.probabilities.append(p)
            r.chosen.append(chosen)
            r.weights.append(w)
            for (e, weight) in zip(chosen, w) {
                r.tokens[e].append(Int32(t))
                r.tokenWeights[e].append(weight)
            }
        }
        return r
    }

    /// out += the block's output for x [n, hidden] (out: [n, hidden]). With
    /// `saved`, keeps what `backward` needs.
    public func forward(_ x: Tensor, into out: Tensor, backend b: Backend, saved: Saved? = nil) {
        let n = x.rows, h = x.rowSize
        let logits = b.zeros([n, experts.count], dtype: .f32)
        b.linear(x, router, bias: nil, into: logits, accumulate: false)
        let routing = route(logits: b.download(logits), tokens: n)
        saved?.routing = routing
        if let saved {
            saved.gate = Array(repeating: nil, count: experts.count)
            saved.up = saved.gate
            saved.output = saved.gate
        }
        // The sum of the experts' weighted outputs first, then into the residual
        // stream, in transformers' order (index_add in ascending expert order).
        let sum = b.zeros([n, h], dtype: .f32)
        for (e, expert) in experts.enumerated() {
            let rows = routing.tokens[e]
            guard !rows.isEmpty else { continue }
            let m = rows.count, ff = expert.gate.outFeatures
            let input = b.zeros([m, h], dtype: .f32)
            b.gatherRows(x, rows: rows, scales: nil, into: input)
            let (gate, up, act) = (b.zeros([m, ff], dtype: .f32), b.zeros([m, ff], dtype: .f32), b.zeros([m, ff], dtype: .f32))
            expert.gate.forward(input, into: gate, backend: b)
            expert.up.forward(input, into: up, backend: b)
            b.swiglu(gate: gate, up: up, into: act)
            let y = b.zeros([m, h], dtype: .f32)
            expert.down.forward(act, into: y, backend: b)
            b.scatterAddRows(y, rows: rows, scales: routing.tokenWeights[e], into: sum)
            if let saved { (saved.gate[e], saved.up[e], saved.output[e]) = (gate, up, y) }
        }
        b.add(out, sum, into: out)
    }

    /// dx = ∂L/∂x given dOut = ∂L/∂(block output), through the experts and
    /// through the router's probabilities.
    public func backward(_ dOut: Tensor, x: Tensor, saved: Saved, dx: Tensor, backend b: Backend) {
        guard let routing = saved.routing else { preconditionFailure("MixtureOfExperts backward without a saved forward") }
        let n = dOut.rows, h = dOut.rowSize, count = experts.count
        b.scale(dx, by: 0)
        // ∂L/∂w[t, e] = ⟨dOut[t], y_e[t]⟩, kept per (token, expert).
        var dWeight = Array(repeating: [Float](repeating: 0, count: count), count: n)
        for (e, expert) in experts.enumerated() {
            let rows = routing.tokens[e]
            guard !rows.isEmpty, let gate = saved.gate[e], let up = saved.up[e], let y = saved.output[e] else { continue }
            let m = rows.count, ff = expert.gate.outFeatures
            let dy = b.zeros([m, h], dtype: .f32)
            b.gatherRows(dOut, rows: rows, scales: nil, into: dy)
            let (dyHost, yHost) = (b.download(dy), b.download(y))
            for (i, t) in rows.enumerated() {
                var dot: Double = 0
                for j in 0 ..< h { dot += Double(dyHost[i * h + j]) * Double(yHost[i * h + j]) }
                dWeight[Int(t)][e] = Float(dot)
            }
            // Through the expert: its output was scaled by w.
            let weighted = b.zeros([m, h], dtype: .f32)
            b.gatherRows(dOut, rows: rows, scales: routing.tokenWeights[e], into: weighted)
            let dAct = b.zeros([m, ff], dtype: .f32)
            expert.down.backward(weighted, saved: nil, dx: dAct, accumulate: false, backend: b)
            let (dGate, dUp) = (b.zeros([m, ff], dtype: .f32), b.zeros([m, ff], dtype: .f32))
            b.swigluBackward(dAct, gate: gate, up: up, dGate: dGate, dUp: dUp)
            let dInput = b.zeros([m, h], dtype: .f32)
            expert.gate.backward(dGate, saved: nil, dx: dInput, accumulate: false, backend: b)
            expert.up.backward(dUp, saved: nil, dx: dInput, accumulate: true, backend: b)
            b.scatterAddRows(dInput, rows: rows, scales: nil, into: dx)
        }
        // Through the router: w = top-k of p (renormalised), p = softmax(z), z = x·Rᵀ.
        var dLogits = [Float](repeating: 0, count: n * count)
        for t in 0 ..< n {
            let chosen = routing.chosen[t], w = routing.weights[t], p = routing.probabilities[t]
            let g = chosen.map { Double(dWeight[t][$0]) }
            var dv = g
            if normalize {
                // w_k = v_k / S: ∂L/∂v_k = (g_k − Σ_j g_j w_j) / S, S = Σ v = Σ_chosen p
                let s = chosen.reduce(0.0) { $0 + Double(p[$1]) }
                let gw = zip(g, w).reduce(0.0) { $0 + $1.0 * Double($1.1) }
                dv = g.map { ($0 - gw) / s }
            }
            var dp = [Double](repeating: 0, count: count)
            for (k, e) in chosen.enumerated() { dp[e] += dv[k] }
            let dot = (0 ..< count).reduce(0.0) { $0 + dp[$1] * Double(p[$1]) }
            for e in 0 ..< count { dLogits[t * count + e] = Float(Double(p[e]) * (dp[e] - dot)) }
        }
        b.linearBackwardInput(b.upload(dLogits, shape: [n, count]), router, into: dx, accumulate: true)
    }
}
