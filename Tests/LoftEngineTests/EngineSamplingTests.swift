import Foundation
import XCTest
@testable import LoftEngine
import LoftInference
import LoftModels
import LoftTensors
import LoftTestSupport

final class EngineSamplingTests: XCTestCase {
    // MARK: the sampler against float64 references

    /// transformers' warpers written out in Double: temperature, then top-k
    /// (keep scores ≥ the k-th largest), top-p (sort ascending, drop while the
    /// cumulative probability ≤ 1 − p, keeping the last), min-p (drop
    /// probabilities below min_p · the largest).
    func referenceDistribution(_ logits: [Double], _ p: SamplingParameters) -> [Int: Double] {
        var scores = logits.map { $0 / Double(p.temperature) }
        func softmax(_ s: [Double]) -> [Double] {
            let mx = s.max()!
            let e = s.map { $0 == -.infinity ? 0 : exp($0 - mx) }
            let z = e.reduce(0, +)
            return e.map { $0 / z }
        }
        if p.topK > 0 {
            let kth = scores.sorted(by: >)[min(p.topK, scores.count) - 1]
            scores = scores.map { $0 < kth ? -.infinity : $0 }
        }
        if p.topP < 1 {
            let probs = softmax(scores)
            let ascending = scores.indices.sorted { probs[$0] < probs[$1] }
            var cumulative = 0.0
            for (rank, i) in ascending.enumerated() {
                cumulative += probs[i]
                if cumulative <= 1 - Double(p.topP) && rank < ascending.count - 1 { scores[i] = -.infinity }
            }
        }
        if p.minP > 0 {
            let probs = softmax(scores)
            let top = probs.max()!
            scores = scores.indices.map { probs[$0] < Double(p.minP) * top ? -.infinity : scores[$0] }
        }
        let probs = softmax(scores)
        var out: [Int: Double] = [:]
        for (i, q) in probs.enumerated() where q > 0 { out[i] = q }
        return out
    }

    func testWarpersMatchFloat64Reference() {
        let seed = UInt64.random(in: 0 ... 1 << 40)
        var rng = SeededRandom(seed: seed)
        let settings: [SamplingParameters] = [
            .init(temperature: 0.7, topK: 20), .init(temperature: 1.3, topP: 0.8), .init(temperature: 1, minP: 0.05),
            .init(temperature: 0.9, topK: 50, topP: 0.9, minP: 0.02), .init(temperature: 1, topP: 0.3),
        ]
        for p in settings {
            for _ in 0 ..< 5 {
                let logits = rng.normals(500, scale: 3).map(Float.init)
                let sampler = TokenSampler(p, seed: 1, prompt: [])
                let got = logits.withUnsafeBufferPointer { sampler.distribution(sampler.adjustedLogits($0, allowed: nil))! }
                let want = referenceDistribution(logits.map(Double.init), p)
                XCTAssertEqual(Set(got.map { Int($0.token) }), Set(want.keys), "seed \(seed) \(p): kept tokens")
                for (t, q) in got { XCTAssertEqual(q, want[Int(t)] ?? -1, accuracy: 1e-12, "seed \(seed) \(p)") }
            }
        }
    }

    /// Draws follow the distribution: frequencies of 20 000 draws within 4σ.
    func testDrawsFollowTheDistribution() {
        let logits: [Float] = [2, 1, 0.5, 0, -1, -3]
        let p = SamplingParameters(temperature: 1, topK: 4)
        var sampler = TokenSampler(p, seed: 99, prompt: [])
        let dist = logits.withUnsafeBufferPointer { sampler.distribution(sampler.adjustedLogits($0, allowed: nil))! }
        var counts = [Int](repeating: 0, count: logits.count)
        let n = 20_000
        for _ in 0 ..< n { counts[Int(logits.withUnsafeBufferPointer { sampler.sample($0) })] += 1 }
        XCTAssertEqual(counts[4] + counts[5], 0)
        for (t, q) in dist {
            let sigma = (q * (1 - q) / Double(n)).squareRoot()
            XCTAssertEqual(Double(counts[Int(t)]) / Double(n), q, accuracy: 4 * sigma + 1e-9)
        }
    }

    func testPenaltiesFollowTheirDefinitions() {
        let p = SamplingParameters(repetitionPenalty: 2, frequencyPenalty: 0.5, presencePenalty: 0.25)
        var sampler = TokenSampler(p, seed: 0, prompt: [0, 1])
        sampler.accept(2); sampler.accept(2); sampler.accept(1)
        let logits: [Float] = [4, -4, 3, 1]
        let got = logits.withUnsafeBufferPointer { sampler.adjustedLogits($0, allowed: nil) }
        // token 0: in prompt → 4/2; 1: in prompt+output → −4·2 − 0.5 − 0.25; 2: output twice → 3/2 − 1 − 0.25; 3 untouched
        XCTAssertEqual(got, [2, -8.75, 0.25, 1])
    }

    func testLogSoftmaxAndTopAgainstFloat64() {
        var rng = SeededRandom(seed: UInt64.random(in: 0 ... 1 << 40))
        let logits = rng.normals(1000, scale: 5).map(Float.init)
        let d = logits.map(Double.init)
        let mx = d.max()!
        let lz = mx + log(d.reduce(0) { $0 + exp($1 - mx) })
        logits.withUnsafeBufferPointer { buf in
            let ls = LogSoftmax(buf)
            for t in [0, 17, 999] { XCTAssertEqual(ls.logprob(Int32(t)), d[t] - lz, accuracy: 1e-12) }
            let top = ls.top(5)
            let want = d.indices.sorted { d[$0] > d[$1] }.prefix(5)
            XCTAssertEqual(top.map { Int($0.0) }, Array(want))
        }
    }

    // MARK: through the engine

    /// A seeded request samples the same tokens alone and batched with others,
    /// and n choices equal n requests with seeds seed, seed+1, …
    func testSeededSamplingAndChoicesIgnoreBatching() throws {
        let (engine, _) = try EngineFixtures.tinyEngine()
        defer { engine.shutdown() }
        var rng = SeededRandom(seed: 5)
        let sampling = SamplingParameters(temperature: 0.9, topK: 40, topP: 0.95, minP: 0.01, repetitionPenalty: 1.1,
                                          frequencyPenalty: 0.2, presencePenalty: 0.1, seed: 1234)
        let prompt = EngineFixtures.randomPrompt(&rng, length: 9, vocab: 256)
        let target = GenerationRequest(prompt: prompt, maxTokens: 20, sampling: sampling, ignoreEOS: true, n: 3)
        let others = (0 ..< 4).map { i in
            GenerationRequest(prompt: EngineFixtures.randomPrompt(&rng, length: 4 + i, vocab: 256), maxTokens: 15,
                              sampling: SamplingParameters(temperature: 1, seed: UInt64(i)), ignoreEOS: true)
        }
        let batched = try engine.generate(others + [target] + others)[4]
        XCTAssertEqual(batched.choices.count, 3)
        for i in 0 ..< 3 {
            var one = target
            one.n = 1
            one.sampling.seed = 1234 + UInt64(i)
            let alone = try engine.generate([one])[0]
            XCTAssertEqual(batched.choices[i].tokens, alone.choices[0].tokens, "choice \(i)")
        }
        XCTAssertNotEqual(batched.choices[0].tokens, batched.choices[1].tokens, "choices with different seeds should differ")
        XCTAssertEqual(batched.usage.completionTokens, 60)
        XCTAssertEqual(engine.kvBlocksInUse, 0)
    }

    /// Log-probabilities of chosen, top and prompt tokens equal log_softmax of
    /// the model's own logits for prompt + output (float64 reference).
    func testLogprobsEqualLogSoftmaxOfTheForward() throws {
        // Decode rows multiply on the GGUF blocks: with the float kernels they
        // equal the forward's GEMM to f32 rounding, so the log-prob bookkeeping
        // is checked exactly here (the int8 kernels' own tolerance is
        // QuantizedDecodingTests' business).
        let mode = QuantizedDecoding.mode
        QuantizedDecoding.mode = .f32
        defer { QuantizedDecoding.mode = mode }
        let engine = try BatchEngine(path: SharedTestPaths.smolLM2, configuration: EngineConfiguration(maxBatch: 4, contextLength: 256))
        defer { engine.shutdown() }
        let prompt = try engine.render(ChatPrompt(messagesJSON: #"[{"role": "user", "content": "Count to five."}]"#), model: nil).tokens
        let r = GenerationRequest(prompt: prompt, maxTokens: 8, logprobs: true, topLogprobs: 3, promptLogprobs: true)
        let result = try engine.generate([r, GenerationRequest(prompt: Array(prompt.prefix(7)), maxTokens: 5)])[0]
        let tokens = result.choices[0].tokens
        let all = prompt + tokens
        let logits = engine.model.forward(ids: all).toArray()
        let vocab = engine.model.config.vocabSize
        func logSoftmax(_ row: Int) -> [Double] {
            let d = logits[row * vocab ..< (row + 1) * vocab].map(Double.init)
            let mx = d.max()!
            let lz = mx + log(d.reduce(0) { $0 + exp($1 - mx) })
            return d.map { $0 - lz }
        }
        let tolerance = 2e-4
        let promptLP = try XCTUnwrap(result.promptLogprobs)
        XCTAssertEqual(promptLP.count, prompt.count)
        XCTAssertNil(promptLP[0])
        for j in 1 ..< prompt.count {
            let want = logSoftmax(j - 1)
            let got = try XCTUnwrap(promptLP[j])
            XCTAssertEqual(got.token, prompt[j])
            XCTAssertEqual(Double(got.logprob), want[Int(prompt[j])], accuracy: tolerance, "prompt token \(j)")
        }
        XCTAssertEqual(result.choices[0].logprobs.count, tokens.count)
        for (j, lp) in result.choices[0].logprobs.enumerated() {
            let want = logSoftmax(prompt.count - 1 + j)
            XCTAssertEqual(Double(lp.logprob), want[Int(tokens[j])], accuracy: tolerance, "output token \(j)")
            XCTAssertEqual(lp.top.count, 3)
            XCTAssertEqual(Int(lp.top[0].token), want.indices.max { want[$0] < want[$1] }!, "greedy picks the top token")
            for alt in lp.top { XCTAssertEqual(Double(alt.logprob), want[Int(alt.token)], accuracy: tolerance) }
        }
    }

    /// Scoring: max_tokens 0 with prompt log-probs (log-likelihood of a
    /// continuation), batched with generating requests, equals log_softmax
    /// of the model's own forward over the prompt (float64 reference).
    func testScoringWithoutGeneratingEqualsTheForward() throws {
        let (engine, model) = try EngineFixtures.tinyEngine()
        defer { engine.shutdown() }
        var rng = SeededRandom(seed: UInt64.random(in: 0 ... 1 << 40))
        let prompt = EngineFixtures.randomPrompt(&rng, length: 40, vocab: 256)
        let others = (0 ..< 3).map { _ in GenerationRequest(prompt: EngineFixtures.randomPrompt(&rng, length: 7, vocab: 256), maxTokens: 6, ignoreEOS: true) }
        let scored = try engine.generate(others + [GenerationRequest(prompt: prompt, maxTokens: 0, promptLogprobs: true)])[3]
        XCTAssertEqual(scored.usage.completionTokens, 0)
        XCTAssertEqual(scored.choices[0].tokens, [])
        let logits = model.forward(ids: prompt).toArray()
        let lp = try XCTUnwrap(scored.promptLogprobs)
        XCTAssertEqual(lp.count, prompt.count)
        for j in 1 ..< prompt.count {
            let d = logits[(j - 1) * 256 ..< j * 256].map(Double.init)
            let mx = d.max()!
            let want = d[Int(prompt[j])] - (mx + log(d.reduce(0) { $0 + exp($1 - mx) }))
            XCTAssertEqual(Double(try XCTUnwrap(lp[j]).logprob), want, accuracy: 1e-5, "prompt token \(j)")
        }
        XCTAssertThrowsError(try engine.generate([GenerationRequest(prompt: prompt, maxTokens: 0)]))

        // Scoring from a position (a continuation after its context): the
        // positions before it are nil, the rest equal the whole prompt's
        // within float rounding (the lm_head product has fewer rows, and BLAS
        // rounds a product by its size).
        let from = Int.random(in: 1 ..< prompt.count, using: &rng)
        let partial = try engine.generate(others + [GenerationRequest(prompt: prompt, maxTokens: 0, promptLogprobs: true,
                                                                      promptLogprobsFrom: from)])[3]
        let plp = try XCTUnwrap(partial.promptLogprobs)
        XCTAssertEqual(plp.count, prompt.count)
        for j in 0 ..< prompt.count {
            if j < from { XCTAssertNil(plp[j], "position \(j) is before \(from)"); continue }
            XCTAssertEqual(try XCTUnwrap(plp[j]).logprob, try XCTUnwrap(lp[j]).logprob, accuracy: 1e-5, "position \(j) (from \(from))")
        }
        // Asking for none of the prompt's log-probs still generates from its last row.
        let plain = try engine.generate([GenerationRequest(prompt: prompt, maxTokens: 5, ignoreEOS: true)])[0]
        let late = try engine.generate([GenerationRequest(prompt: prompt, maxTokens: 5, ignoreEOS: true, promptLogprobs: true,
                                                          promptLogprobsFrom: prompt.count)])[0]
        XCTAssertEqual(late.choices[0].tokens, plain.choices[0].tokens)
        XCTAssertEqual(try XCTUnwrap(late.promptLogprobs).compactMap { $0 }.count, 0)
    }

    // MARK: stop strings

    func testStopStringFilterNeverReleasesAStopPrefix() {
        var f = StopStringFilter(["o Wo", "XYZ"])
        var out = ""
        for piece in ["Hel", "lo", " W", "o", "rld"] { out += f.add(piece) }
        XCTAssertTrue(f.stopped)
        XCTAssertEqual(out, "Hell")
        var g = StopStringFilter(["ab"])
        XCTAssertEqual(g.add("xa"), "x")     // "a" may start "ab"
        XCTAssertEqual(g.add("c"), "ac")      // it did not
        XCTAssertEqual(g.add("a"), "")
        XCTAssertEqual(g.flush(), "a")
        XCTAssertFalse(g.stopped)
        var h = StopStringFilter(["é!"])
        XCTAssertEqual(h.add("café"), "caf")
        XCTAssertEqual(h.add("!x"), "")
        XCTAssertTrue(h.stopped)
    }

    /// A stop string taken from the middle of a greedy answer, spanning a token
    /// boundary: the text ends right before it, and no streamed delta ever
    /// held part of it.
    func testStopStringAcrossTokenBoundariesThroughTheEngine() async throws {
        let engine = try BatchEngine(path: SharedTestPaths.smolLM2, configuration: EngineConfiguration(maxBatch: 4, contextLength: 256))
        defer { engine.shutdown() }
        let prompt = try engine.render(ChatPrompt(messagesJSON: #"[{"role": "user", "content": "Describe the sea in two sentences."}]"#), model: nil).tokens
        let free = try engine.generate([GenerationRequest(prompt: prompt, maxTokens: 40)])[0].choices[0]
        // token boundary inside the text: decode prefixes
        let texts = (1 ... free.tokens.count).map { engine.tokenizer.decode(free.tokens.prefix($0).map(Int.init), skipSpecialTokens: true) }
        let boundary = texts[texts.count / 2].utf8.count
        let full = Array(free.text.utf8)
        XCTAssertGreaterThan(full.count, boundary + 3)
        let stop = String(decoding: full[(boundary - 2) ..< (boundary + 3)], as: UTF8.self)
        let expected = free.text.components(separatedBy: stop)[0]
        var request = GenerationRequest(prompt: prompt, maxTokens: 40, stopStrings: ["zzzz-never", stop])
        request.logprobs = false
        var streamed = ""
        var reason: FinishReason?
        for try await event in try engine.submit(request) {
            switch event {
            case .delta(_, _, let text, _):
                streamed += text
                XCTAssertFalse(streamed.contains(stop))
                XCTAssertTrue(expected.hasPrefix(streamed), "streamed text went past the stop string: \(streamed.debugDescription)")
            case .finished(_, let r, _): reason = r
            default: break
            }
        }
        XCTAssertEqual(streamed, expected)
        XCTAssertEqual(reason, .stop)
    }
}
