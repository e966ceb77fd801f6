import Foundation
import LoftTensors

/// Keys and values of many sequences in one preallocated arena per layer
/// ([tokens, kvHeads·headDim]). A sequence owns a contiguous `KVSpan` of it,
/// so attention reads its keys as a plain view (the same call, and the same
/// numbers, as `KVCache`). Which spans are free is the engine's business.
public final class KVArena: @unchecked Sendable {
    public let capacity: Int
    public let width: Int
    let keys: [Tensor]
    let values: [Tensor]

    public init(config: ModelConfig, tokens: Int, backend: Backend) {
        capacity = tokens
        width = config.kvHeads * config.headDim
        keys = (0 ..< config.layers).map { _ in backend.zeros([tokens, config.kvHeads * config.headDim], dtype: .f32) }
        values = (0 ..< config.layers).map { _ in backend.zeros([tokens, config.kvHeads * config.headDim], dtype: .f32) }
    }

    /// Bytes one cached token takes over all layers.
    public static func bytesPerToken(_ c: ModelConfig) -> Int { 2 * c.layers * c.kvHeads * c.headDim * MemoryLayout<Float>.size }

    /// Copies the first `count` cached tokens of `source` to the start of
    /// `destination` (n choices sharing one prefill).
    public func copy(_ count: Int, from source: Int, to destination: Int, backend: Backend) {
        guard count > 0 else { return }
        for l in keys.indices {
            backend.copy(keys[l].rows(source ..< source + count), into: keys[l].rows(destination ..< destination + count))
            backend.copy(values[l].rows(source ..< source + count), into: values[l].rows(destination ..< destination + count))
        }
    }
}

/// A low-rank adapter held apart from the model (not attached to its
/// projections), so rows of one step can each use their own:
/// `layers[i]["q"]` is layer i's q_proj adapter (short names as
/// `LoRAConfig.shortNames`).
public final class DetachedAdapter: @unchecked Sendable {
    public let layers: [[String: LoRA]]
    public init(layers: [[String: LoRA]]) { self.layers = layers }
    public var rank: Int { layers.lazy.flatMap { $0.values }.first?.rank ?? 0 }
}

/// One sequence's share of an engine step: `ids` continue the sequence whose
/// first `cached` tokens are already in the arena at `spanStart`.
public struct StepSequence {
    public enum Logits: Equatable {
        case none, last, all
        /// The rows from index k of this chunk on (a prompt scored only after its context).
        case from(Int)
        /// Which of a chunk's `n` rows get logits.
        public func rows(_ n: Int) -> Range<Int> {
            switch self {
            case .none: return n ..< n
            case .last: return n - 1 ..< n
            case .all: return 0 ..< n
            case .from(let k): return min(max(k, 0), n) ..< n
            }
        }
    }
    public var ids: [Int32]
    public var spanStart: Int
    public var cached: Int
    public var adapter: DetachedAdapter?
    public var logits: Logits
    /// A generated token fed back (not a prompt chunk): its rows multiply on
    /// GGUF blocks with the decoding kernels, prompt rows through the GEMM,
    /// whatever else shares the step. Decoding sequences come first in a step.
    public var decoding: Bool
    public init(ids: [Int32], spanStart: Int, cached: Int, adapter: DetachedAdapter?, logits: Logits, decoding: Bool = false) {
        self.ids = ids; self.spanStart = spanStart; self.cached = cached; self.adapter = adapter; self.logits = logits
        self.decoding = decoding
    }
}

extension LlamaModel {
    /// One step of the batched engine over rows of many sequences (prefill
    /// chunks and single decode tokens alike): norms, projections and the MLP
    /// run once over all rows; attention runs per sequence against its own
    /// span of `arena`; RoPE uses each row's own position; each run of
    /// consecutive sequences sharing an adapter adds that adapter's
    /// scale·(x·Aᵀ)·Bᵀ to its rows only (put sequences with the same adapter
    /// next to each other for one GEMM pair per adapter, as S-LoRA gathers).
    ///
    /// Returns logits [rows asked, vocab] in sequence order: nothing for
    /// `.none`, the last row for `.last`, every row for `.all`. The keys and
    /// values of `ids` are written after each sequence's cached ones. The
    /// model's own attached adapters (if any) also apply to every row; the
    /// engine keeps its base detached. The training path (`forward`,
    /// `forwardLayer`) is untouched by this method.
    public func forwardStep(_ sequences: [StepSequence], arena: KVArena) -> Tensor {
        let c = config, b = backend
        var ids: [Int32] = [], positions: [Int32] = [], offsets: [Int] = []
        var logitRows: [Int] = []
        // Where each sequence's logit rows start in `logitRows`.
        var logitStarts: [Int] = []
        for s in sequences {
            precondition(!s.ids.isEmpty, "forwardStep: a sequence with no tokens")
            offsets.append(ids.count)
            logitStarts.append(logitRows.count)
            logitRows += s.logits.rows(s.ids.count).map { ids.count + $0 }
            ids += s.ids
            positions += (0 ..< s.ids.count).map { Int32(s.cached + $0) }
        }
        offsets.append(ids.count)
        // Runs of consecutive sequences sharing one adapter: their rows are contiguous.
        var runs: [(adapter: DetachedAdapter, rows: Range<Int>)] = []
        for (i, s) in sequences.enumerated() {
            guard let a = s.adapter else { continue }
            if let last = runs.last, last.adapter === a, last.rows.upperBound == offsets[i] {
                runs[runs.count - 1].rows = last.rows.lowerBound ..< offsets[i + 1]
            } else {
                runs.append((a, offsets[i] ..< offsets[i + 1]))
            }
        }
        let batch = self.batch(ids: ids, positions: positions)
        // Dynamic NTK and LongRoPE depend on each sequence's own length (as they
        // do when the sequence runs alone); the other scalings do not.
        var ropes = [(invFreq: batch.invFreq, attentionScale: batch.attentionScale)]
        if c.ropeScaling.dependsOnLength {
            ropes = sequences.map { RoPEFrequencies.compute(c, sequenceLength: $0.cached + $0.ids.count) }
        }
        // Sliding layers with a base of their own (Gemma 3) are never scaled.
        let localRope = batch.localInvFreq.map { (invFreq: $0, attentionScale: Float(1)) }
        let x = embed(batch)
        let s = LayerActivations(config: c, tokens: ids.count, backend: b)
        let eps = Float(c.rmsNormEps)
        let n = ids.count
        // Rows of the leading decoding sequences take the kernels, the rest the
        // GEMM (`QuantizedDecoding.Route`): a row's numbers never depend on
        // what shares its step.
        var decodeRows = 0, firstPrompt = 0
        for (i, s) in sequences.enumerated() {
            guard s.decoding else { break }
            decodeRows = offsets[i + 1]
            firstPrompt = i + 1
        }
        // Projections of one input (q, k and v; gate and up; or one alone):
        // the decode rows' products as one job on the GGUF blocks
        // (`Linear.forwardShared`), the same numbers as one at a time.
        func project(_ targets: [(linear: Linear, name: String, output: Tensor)], _ layer: Int, _ input: Tensor, accumulate: Bool) {
            // The decode rows' adapter updates ride in their base job when every
            // adapter there is plain LoRA (`CPUBackend.linearShared`'s `lowRank`:
            // each row still alone, the numbers of `addLowRankUpdates`).
            var fusedRows = 0
            if decodeRows > 0 {
                let d = 0 ..< decodeRows
                QuantizedDecoding.withRoute(.kernels) {
                    if let cpu = b as? CPUBackend,
                       targets.allSatisfy({ $0.linear.lora == nil && $0.linear.frozenAdapters.isEmpty && $0.linear.frozen.dense == nil }) {
                        let lowRank = targets.map { t in
                            runs.compactMap { run -> (rows: Range<Int>, lora: LoRA)? in
                                let rows = run.rows.clamped(to: d)
                                return rows.isEmpty ? nil : run.adapter.layers[layer][t.name].map { (rows, $0) }
                            }
                        }
                        if lowRank.allSatisfy({ $0.allSatisfy { $0.lora.magnitude == nil } }),
                           cpu.linearShared(input.rows(d), frozen: targets.map { $0.linear.frozen as FrozenMatrix },
                                            biases: targets.map(\.linear.bias), into: targets.map { $0.output.rows(d) },
                                            accumulate: accumulate,
                                            lowRank: lowRank.map { $0.map { $0.lora.onRows($0.rows) } }) {
                            fusedRows = decodeRows
                            return
                        }
                    }
                    if !accumulate, targets.count > 1 {
                        Linear.forwardShared(targets.map(\.linear), input.rows(d), into: targets.map { $0.output.rows(d) }, backend: b)
                    } else {
                        for t in targets { t.linear.forward(input.rows(d), into: t.output.rows(d), backend: b, accumulate: accumulate) }
                    }
                }
            }
            for t in targets {
                // Each prompt chunk in a product of its own: a GEMM's rounding can
                // depend on its row count, so rows multiplied together must be the
                // same rows alone or batched (the scheduler cuts prompts at fixed
                // boundaries).
                for j in firstPrompt ..< sequences.count {
                    let p = offsets[j] ..< offsets[j + 1]
                    QuantizedDecoding.withRoute(.gemm) { t.linear.forward(input.rows(p), into: t.output.rows(p), backend: b, accumulate: accumulate) }
                }
                // A row's update must not depend on how many others share its
                // adapter in this step. On the CPU every run's rows go in one call
                // that computes each row alone (`addLowRankUpdates`, split over
                // the cores as one job); elsewhere row by row, since a GEMM's
                // rounding can depend on how many rows it multiplies.
                let active = runs.compactMap { run -> (Range<Int>, LoRA)? in
                    let rows = run.rows.clamped(to: fusedRows ..< n)
                    return rows.isEmpty ? nil : run.adapter.layers[layer][t.name].map { (rows, $0) }
                }
                if active.isEmpty { continue }
                if let cpu = b as? CPUBackend, active.allSatisfy({ $0.1.magnitude == nil }),
                   cpu.addLowRankUpdates(active.map { rows, lora in
                       CPUBackend.LowRankUpdate(x: input.rows(rows), a: lora.a, b: lora.b, packed: lora.packed,
                                                scale: lora.scale, y: t.output.rows(rows))
                   }) {
                    continue
                }
                for (rows, lora) in active {
                    for r in rows {
                        lora.forward(input.rows(r ..< r + 1), into: t.output.rows(r ..< r + 1), backend: b, saved: nil)
                    }
                }
            }
        }
        for (i, layer) in layers.enumerated() {
            b.rmsNorm(x, weight: layer.attentionNorm, eps: eps, weightOffset: c.normWeightOffset, into: s.normed1, rstd: s.rstd1)
            if layer.fused, let qkv = s.qkv {
                project([(layer.qkv[0], "qkv", qkv)], i, s.normed1, accumulate: false)
                splitColumns(qkv, into: [s.q, s.k, s.v])
            } else {
                project([(layer.qkv[0], "q", s.q), (layer.qkv[1], "k", s.k), (layer.qkv[2], "v", s.v)], i, s.normed1, accumulate: false)
            }
            normalizeQK(layer, s, tokens: n)
            let layerRopes = c.usesLocalRoPE(layer: i) ? localRope.map { [$0] } ?? ropes : ropes
            for (j, r) in layerRopes.enumerated() {
                let rows = layerRopes.count == 1 ? 0 ..< n : offsets[j] ..< offsets[j + 1]
                let pos = Array(positions[rows])
                b.rope(s.q.rows(rows), heads: c.heads, headDim: c.headDim, positions: pos, invFreq: r.invFreq,
                       attentionScale: r.attentionScale, inverse: false)
                b.rope(s.k.rows(rows), heads: c.kvHeads, headDim: c.headDim, positions: pos, invFreq: r.invFreq,
                       attentionScale: r.attentionScale, inverse: false)
            }
            for (j, seq) in sequences.enumerated() {
                let rows = offsets[j] ..< offsets[j + 1]
                let start = seq.spanStart + seq.cached
                b.copy(s.k.rows(rows), into: arena.keys[i].rows(start ..< start + rows.count))
                b.copy(s.v.rows(rows), into: arena.values[i].rows(start ..< start + rows.count))
                let span = seq.spanStart ..< start + rows.count
                b.attention(q: s.q.rows(rows), k: arena.keys[i].rows(span), v: arena.values[i].rows(span),
                            out: s.attended.rows(rows), lse: nil,
                            spec: AttentionSpec(heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim, scale: c.attentionScale,
                                                queryOffset: seq.cached, window: c.window(layer: i), softcap: c.attentionSoftcap))
            }
            addSublayer(x, s, norm: layer.postAttentionNorm, output: s.attentionOutput, rstd: s.attentionOutputRstd) { out, accumulate in
                project([(layer.o, "o", out)], i, s.attended, accumulate: accumulate)
            }
            b.rmsNorm(x, weight: layer.mlpNorm, eps: eps, weightOffset: c.normWeightOffset, into: s.normed2, rstd: s.rstd2)
            if let moe = layer.moe {
                // Experts multiply the rows routed to them together: each decode
                // row and each prompt chunk goes alone, so that a row's numbers
                // never depend on what shares its step.
                let pieces = (0 ..< decodeRows).map { ($0 ..< $0 + 1, QuantizedDecoding.Route.kernels) }
                    + (firstPrompt ..< sequences.count).map { (offsets[$0] ..< offsets[$0 + 1], QuantizedDecoding.Route.gemm) }
                for (rows, route) in pieces {
                    QuantizedDecoding.withRoute(route) { moe.forward(s.normed2.rows(rows), into: x.rows(rows), backend: b) }
                }
                continue
            }
            if layer.fused, let gateUp = s.gateUp {
                project([(layer.gateUp[0], "gate_up", gateUp)], i, s.normed2, accumulate: false)
                splitColumns(gateUp, into: [s.gate, s.up])
            } else {
                project([(layer.gateUp[0], "gate", s.gate), (layer.gateUp[1], "up", s.up)], i, s.normed2, accumulate: false)
            }
            activate(gate: s.gate, up: s.up, into: s.activated)
            addSublayer(x, s, norm: layer.postFeedforwardNorm, output: s.mlpOutput, rstd: s.mlpOutputRstd) { out, accumulate in
                project([(layer.down!, "down", out)], i, s.activated, accumulate: accumulate)
            }
        }
        if logitRows.isEmpty { return b.zeros([1, c.vocabSize], dtype: .f32).rows(0 ..< 0) }
        let hidden = finalHidden(x, rows: logitRows)
        let decodeLogits = logitRows.prefix { $0 < decodeRows }.count
        let out = b.zeros([logitRows.count, c.vocabSize], dtype: .f32)
        if decodeLogits > 0 {  // the decode rows' kernels work row by row
            let d = 0 ..< decodeLogits
            QuantizedDecoding.withRoute(.kernels) { b.copy(logits(hidden.rows(d)), into: out.rows(d)) }
        }
        // Prompt rows: one product per sequence, so that the rows multiplied
        // together are the same whatever else shares the step.
        logitStarts.append(logitRows.count)
        for j in sequences.indices {
            let lo = max(logitStarts[j], decodeLogits), hi = logitStarts[j + 1]
            guard lo < hi else { continue }
            let rows = lo ..< hi
            QuantizedDecoding.withRoute(.gemm) { b.copy(logits(hidden.rows(rows)), into: out.rows(rows)) }
        }
        return out
    }
}

extension PEFTAdapter {
    /// Reads the adapter in `directory` (PEFT or mlx-lm) as weights of its
    /// own, for `forwardStep`'s per-row adapters, with every check `load`
    /// makes (shapes against the model's projections, no unmatched tensors).
    /// The model is left with nothing attached; it must not run meanwhile.
    public static func loadDetached(_ directory: String, for model: LlamaModel) throws -> (DetachedAdapter, LoRAConfig) {
        defer { model.detachLoRA() }
        let config = try load(directory, into: model)
        var layers = Array(repeating: [String: LoRA](), count: model.layers.count)
        for slot in model.adapterSlots {
            guard let short = LoRAConfig.shortNames[slot.module] else { continue }
            layers[slot.layer][short] = slot.lora
        }
        return (DetachedAdapter(layers: layers), config)
    }
}
