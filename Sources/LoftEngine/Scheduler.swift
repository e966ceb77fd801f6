import Foundation
import LoftInference
import LoftModels
import LoftTensors
import LoftTokenizers

/// One request as the scheduler tracks it.
final class RequestState {
    let request: GenerationRequest
    let adapter: AdapterEntry?
    let stopTokens: Set<Int32>
    let grammar: JSONGrammar?
    let sink: (GenerationEvent) -> Void
    let end: (Error?) -> Void
    var choices: [SequenceState] = []
    /// The adapter's weights and base, pinned at admission.
    var weights: DetachedAdapter?
    var base: LlamaModel?
    var cancelled = false
    var completionTokens = 0
    var finishedChoices = 0
    var promptLogprobs: [TokenLogprob?] = []
    let submitted = Date()
    var firstToken: Date?

    init(request: GenerationRequest, adapter: AdapterEntry?, stopTokens: Set<Int32>, grammar: JSONGrammar?,
         sink: @escaping (GenerationEvent) -> Void, end: @escaping (Error?) -> Void) {
        self.request = request; self.adapter = adapter; self.stopTokens = stopTokens; self.grammar = grammar
        self.sink = sink; self.end = end
    }

    var modelName: String? { adapter?.name }
}

/// One choice of a request: its KV span, its tokens and its output filters.
final class SequenceState {
    enum Phase { case waiting, prefill, decode, done }
    let choice: Int
    var phase: Phase
    var span: KVBlockPool.Span?
    var spanStart = 0
    /// Tokens in the KV cache.
    var cached = 0
    let prompt: [Int32]
    var generated: [Int32] = []
    var sampler: TokenSampler
    let detokenizer: StreamingDetokenizer
    var stops: StopStringFilter
    var grammar: JSONGrammarState?
    /// Its `.finished` event was sent.
    var reported = false

    init(choice: Int, prompt: [Int32], sampler: TokenSampler, detokenizer: StreamingDetokenizer,
         stops: StopStringFilter, grammar: JSONGrammarState?) {
        self.choice = choice; self.prompt = prompt; self.sampler = sampler; self.detokenizer = detokenizer
        self.stops = stops; self.grammar = grammar
        phase = choice == 0 ? .prefill : .waiting
    }
}

extension BatchEngine {
    /// The scheduler: admits queued requests while sequences and KV blocks
    /// allow, runs one step, hands out its tokens; sleeps when idle.
    func schedulerLoop() {
        while true {
            state.lock()
            while queue.isEmpty && running.isEmpty && !stopping { state.wait() }
            if stopping {
                let all = queue + running
                queue.removeAll(); running.removeAll()
                for r in all { for s in r.choices where s.phase != .done { release(s) } }
                state.unlock()
                for r in all { finishAll(r, reason: .cancelled) }
                return
            }
            // Cancelled requests leave before the step is built (within one step).
            let cancelled = (queue + running).filter(\.cancelled)
            queue.removeAll(where: \.cancelled)
            running.removeAll(where: \.cancelled)
            for r in cancelled { for s in r.choices where s.phase != .done { release(s) } }
            var failed: [(RequestState, Error)] = []
            admit(&failed)
            let work = running
            state.unlock()
            for r in cancelled { r.adapter.map(adapterDone); finishAll(r, reason: .cancelled) }
            for (r, e) in failed { r.adapter.map(adapterDone); r.end(e) }
            if !work.isEmpty {
                step(work)
                if pauseAfterStepForTesting > 0 { Thread.sleep(forTimeInterval: pauseAfterStepForTesting) }
            }
        }
    }

    /// Moves requests from the queue to the batch in arrival order, each
    /// when its n choices fit the batch and the KV pool (called locked).
    private func admit(_ failed: inout [(RequestState, Error)]) {
        var active = running.reduce(0) { $0 + $1.choices.filter { $0.phase != .done }.count }
        while let r = queue.first {
            let n = r.choices.count
            guard active + n <= configuration.maxBatch else { break }
            let budget = r.request.prompt.count + r.request.maxTokens
            var spans: [KVBlockPool.Span] = []
            for _ in 0 ..< n {
                guard let s = pool.allocate(tokens: budget) else { break }
                spans.append(s)
            }
            guard spans.count == n else { for s in spans { pool.free(s) }; break }
            queue.removeFirst()
            if let entry = r.adapter {
                do {
                    let (weights, base) = try residentWeights(entry)
                    r.weights = weights; r.base = base
                } catch {
                    for s in spans { pool.free(s) }
                    failed.append((r, error))
                    continue
                }
            } else {
                r.base = model
            }
            for (s, span) in zip(r.choices, spans) {
                s.span = span
                s.spanStart = pool.startToken(span)
            }
            running.append(r)
            active += n
        }
    }

    /// Gives a sequence's KV blocks back (called locked).
    func release(_ s: SequenceState) {
        if let span = s.span { pool.free(span) }
        s.span = nil
        s.phase = .done
    }

    /// Reports every choice not yet finished as ended for `reason`; the last
    /// report carries the request's usage.
    private func finishAll(_ r: RequestState, reason: FinishReason) {
        let pending = r.choices.filter { !$0.reported }
        for (k, s) in pending.enumerated() {
            s.reported = true
            r.sink(.finished(choice: s.choice, reason: reason, usage: k == pending.count - 1
                ? Usage(promptTokens: r.request.prompt.count, completionTokens: r.completionTokens) : nil))
        }
        r.end(nil)
    }

    // MARK: one step

    private struct Row {
        let request: RequestState
        let sequence: SequenceState
        let ids: [Int32]
        let logits: StepSequence.Logits
        var decoding = false
    }

    private func step(_ work: [RequestState]) {
        var rows: [Row] = []
        var budget = max(configuration.stepTokenBudget, configuration.maxBatch + 1)
        for r in work {
            for s in r.choices where s.phase == .decode {
                rows.append(Row(request: r, sequence: s, ids: [s.generated.last!], logits: .last, decoding: true))
                budget -= 1
            }
        }
        // Prompts are cut at fixed boundaries (multiples of the step budget),
        // never where the budget happens to run out: a chunk is the same rows
        // alone or batched, so its products round the same. A chunk that does
        // not fit waits for the next step, except the step's first (progress).
        let chunk = max(1, configuration.stepTokenBudget)
        var prefilling = false
        for r in work {
            for s in r.choices where s.phase == .prefill {
                let n = min(chunk - s.cached % chunk, s.prompt.count - s.cached)
                if n > budget && prefilling { continue }
                prefilling = true
                let completes = s.cached + n == s.prompt.count
                // Row j predicts position cached + j + 1: the rows before
                // `promptLogprobsFrom` - 1 need no logits.
                let from = min(max(r.request.promptLogprobsFrom, 0), s.prompt.count)
                rows.append(Row(request: r, sequence: s, ids: Array(s.prompt[s.cached ..< s.cached + n]),
                                logits: r.request.promptLogprobs ? .from(from - 1 - s.cached) : completes ? .last : .none))
                budget -= n
            }
        }
        guard !rows.isEmpty else { return }
        // One forward per base model (a second base only for adapters trained
        // on a compact one); rows sorted by adapter so each adapter's rows are
        // contiguous (one pair of small GEMMs per adapter).
        var groups: [ObjectIdentifier: [Row]] = [:]
        for row in rows { groups[ObjectIdentifier(row.request.base!), default: []].append(row) }
        let started = Date()
        var decoded = 0
        var distinct = Set<String>()
        modelLock.lock()
        var outputs: [(Row, [Float], Int)] = []   // row, its logits, how many rows
        for (_, group) in groups.sorted(by: { $0.key == ObjectIdentifier(model) && $1.key != ObjectIdentifier(model) }) {
            // Decode rows first (they take the GGUF-block kernels, `forwardStep`), then by adapter.
            let sorted = group.sorted {
                $0.decoding != $1.decoding ? $0.decoding : ($0.request.modelName ?? "") < ($1.request.modelName ?? "")
            }
            let base = sorted[0].request.base!
            let seqs = sorted.map {
                StepSequence(ids: $0.ids, spanStart: $0.sequence.spanStart, cached: $0.sequence.cached,
                             adapter: $0.request.weights, logits: $0.logits, decoding: $0.decoding)
            }
            let logits = base.forwardStep(seqs, arena: arena)
            let values = logits.rows > 0 ? base.backend.download(logits) : []
            let vocab = base.config.vocabSize
            var at = 0
            for row in sorted {
                distinct.insert(row.request.modelName ?? "")
                let count = row.logits.rows(row.ids.count).count
                outputs.append((row, Array(values[at * vocab ..< (at + count) * vocab]), count))
                at += count
            }
        }
        modelLock.unlock()
        for (row, logits, count) in outputs {
            let s = row.sequence, r = row.request
            let vocab = model.config.vocabSize
            let wasPrefill = s.phase == .prefill
            let first = s.cached
            s.cached += row.ids.count
            if wasPrefill && r.request.promptLogprobs {
                collectPromptLogprobs(r, logits: logits, firstPosition: first + row.logits.rows(row.ids.count).lowerBound, rows: count)
            }
            guard count > 0 else { continue }
            let last = Array(logits[(count - 1) * vocab ..< count * vocab])
            if wasPrefill {
                guard s.cached == s.prompt.count else { continue }
                if r.request.promptLogprobs {
                    while r.promptLogprobs.count < s.prompt.count { r.promptLogprobs.append(nil) }
                    r.sink(.promptLogprobs(r.promptLogprobs))
                }
                if r.request.maxTokens == 0 {   // scoring only: the prompt's log-probs were the answer
                    for c in r.choices { finishChoice(r, c, .length) }
                    continue
                }
                // n choices share this prefill: copy the prompt's keys and values.
                for other in r.choices where other !== s && other.phase == .waiting {
                    arena.copy(s.prompt.count, from: s.spanStart, to: other.spanStart, backend: model.backend)
                    other.cached = s.prompt.count
                }
                for c in r.choices where c.phase == .waiting || c === s {
                    c.phase = .decode
                    decoded += 1
                    emitToken(r, c, logits: last)
                }
            } else {
                decoded += 1
                emitToken(r, s, logits: last)
            }
        }
        let seconds = Date().timeIntervalSince(started)
        var ended: [RequestState] = []
        state.lock()
        stats.steps += 1
        stats.maxAdaptersInOneStep = max(stats.maxAdaptersInOneStep, distinct.count)
        recentRates.append((decoded, seconds))
        if recentRates.count > 50 { recentRates.removeFirst(recentRates.count - 50) }
        for r in work where r.finishedChoices == r.choices.count {
            for s in r.choices where s.span != nil { release(s) }
            ended.append(r)
        }
        running.removeAll { r in ended.contains { $0 === r } }
        state.unlock()
        for r in ended { r.adapter.map(adapterDone); r.end(nil) }
    }

    private func collectPromptLogprobs(_ r: RequestState, logits: [Float], firstPosition: Int, rows: Int) {
        let vocab = model.config.vocabSize
        let prompt = r.request.prompt
        if r.promptLogprobs.isEmpty { r.promptLogprobs = [nil] }
        logits.withUnsafeBufferPointer { all in
            for j in 0 ..< rows {
                let position = firstPosition + j + 1   // the token row j predicts
                guard position < prompt.count else { break }
                while r.promptLogprobs.count < position { r.promptLogprobs.append(nil) }   // before promptLogprobsFrom
                let row = UnsafeBufferPointer(rebasing: all[j * vocab ..< (j + 1) * vocab])
                r.promptLogprobs.append(tokenLogprob(prompt[position], LogSoftmax(row), top: r.request.topLogprobs))
            }
        }
    }

    func tokenLogprob(_ token: Int32, _ ls: LogSoftmax, top: Int) -> TokenLogprob {
        TokenLogprob(token: token, text: tokenizer.decode([Int(token)]), logprob: Float(ls.logprob(token)),
                     top: ls.top(top).map { TopLogprob(token: $0.0, text: tokenizer.decode([Int($0.0)]), logprob: Float($0.1)) })
    }

    /// Samples one choice's next token from its logits and reports it.
    private func emitToken(_ r: RequestState, _ s: SequenceState, logits: [Float]) {
        let token: Int32 = logits.withUnsafeBufferPointer { row in
            var allowed: [Bool]?
            if let g = s.grammar, let grammar = r.grammar {
                var mask = grammar.allowedTokens(g)
                // Stop tokens only where the document may end (or, should the
                // grammar ever leave no token, to end rather than emit garbage).
                if grammar.canEnd(g) || !mask.contains(true) {
                    for t in r.stopTokens where Int(t) < mask.count { mask[Int(t)] = true }
                }
                allowed = mask
            }
            return s.sampler.sample(row, allowed: allowed)
        }
        s.sampler.accept(token)
        s.generated.append(token)
        r.completionTokens += 1
        if r.firstToken == nil {
            r.firstToken = Date()
            let ttft = r.firstToken!.timeIntervalSince(r.submitted)
            state.lock()
            stats.timeToFirstTokenSeconds.append(ttft)
            if stats.timeToFirstTokenSeconds.count > 100 { stats.timeToFirstTokenSeconds.removeFirst() }
            state.unlock()
        }
        state.lock()
        stats.generatedTokens[r.adapter?.name ?? baseName, default: 0] += 1
        state.unlock()
        var logprobs: [TokenLogprob] = []
        if r.request.logprobs {
            logits.withUnsafeBufferPointer { logprobs = [tokenLogprob(token, LogSoftmax($0), top: r.request.topLogprobs)] }
        }
        var reason: FinishReason?
        var text = ""
        if r.stopTokens.contains(token) {
            reason = .stop
        } else {
            text = s.stops.add(s.detokenizer.add(Int(token)))
            if s.stops.stopped { reason = .stop }
            if let g = s.grammar {
                if let next = r.grammar!.advance(g, token: token) {
                    s.grammar = next
                    if r.grammar!.isComplete(next) { reason = .stop }
                } else {
                    reason = .stop   // only when no allowed token was left
                }
            }
        }
        if reason == nil && s.generated.count >= r.request.maxTokens { reason = .length }
        if reason != nil && !s.stops.stopped {
            text += s.stops.add(s.detokenizer.finish())
            text += s.stops.flush()
        }
        r.sink(.delta(choice: s.choice, tokens: [token], text: text, logprobs: logprobs))
        if let reason { finishChoice(r, s, reason) }
    }

    /// A choice ended: its blocks go back, and the last choice reports usage.
    private func finishChoice(_ r: RequestState, _ s: SequenceState, _ reason: FinishReason) {
        state.lock()
        release(s)
        r.finishedChoices += 1
        let all = r.finishedChoices == r.choices.count
        state.unlock()
        s.reported = true
        r.sink(.finished(choice: s.choice, reason: reason,
                         usage: all ? Usage(promptTokens: r.request.prompt.count, completionTokens: r.completionTokens) : nil))
    }
}
