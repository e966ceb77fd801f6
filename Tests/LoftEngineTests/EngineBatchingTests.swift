import Foundation
import XCTest
@testable import LoftEngine
import LoftInference
import LoftModels
import LoftTensors
import LoftTestSupport

/// Batching never changes results: per-row adapters equal attached LoRA, and
/// a request batched with others gives the tokens it gives alone.
final class EngineBatchingTests: XCTestCase {
    /// forwardStep's logits for three sequences (base, adapter 1, adapter 2;
    /// one of them continuing a cached prefix) against the model with each
    /// adapter attached, run alone. Tolerance 1e-5 of the largest |logit|.
    func testPerRowAdapterLogitsEqualAttachedLoRA() throws {
        // every switch of the Llama family: q/k norm, attention bias, sliding window, dynamic RoPE;
        // Gemma 3's sandwich norms, GeGLU, local/global layers (prompts of 17 and 23 pass its window of 8);
        // Phi-3's fused projections and LongRoPE (17 and 23 tokens take the long factors, 9 the short),
        // Phi-4-mini's partial rotary; experts routed per token (Qwen3-MoE, Mixtral)
        for family in ["llama", "qwen3", "qwen2", "mistral", "llama_rope_dynamic", "gemma3", "gemma2", "phi3", "phi4_mini", "qwen3_moe", "mixtral"] {
            try checkPerRowAdapterLogits(SharedTestPaths.fixtures(of: "LoftModelsTests").appendingPathComponent("tiny/\(family)").path)
        }
    }

    /// `halfPrecisionAdapters` (loft serve --adapter-precision f16): rows read
    /// A and B rounded to half. Their logits move from the f32 rows' (so the
    /// halves are what ran) by less than 2 % of the most the adapter moves
    /// any logit (half's 2⁻¹¹ relative rounding of A and B, compounded over
    /// the layers), and the engine keeps halves only when asked.
    func testHalfPrecisionAdapterRowsStayCloseToF32() throws {
        let seed = UInt64.random(in: 0 ... 1 << 40)
        var rng = SeededRandom(seed: seed)
        let (model, _) = try ModelLoader.load(SharedTestPaths.fixtures(of: "LoftModelsTests").appendingPathComponent("tiny/llama").path)
        let dir = try EngineFixtures.randomAdapter(for: model, scale: 0.2, seed: seed, name: "h")
        let full = try PEFTAdapter.loadDetached(dir, for: model).0
        let half = try PEFTAdapter.loadDetached(dir, for: model).0
        for layer in half.layers { for lora in layer.values { lora.keepPacked(half: true) } }
        let prompt = EngineFixtures.randomPrompt(&rng, length: 5, vocab: model.config.vocabSize)
        func logits(_ adapter: DetachedAdapter?) -> [Float] {
            let arena = KVArena(config: model.config, tokens: 64, backend: model.backend)
            // Decode rows take the row-by-row adapter path that reads the halves.
            _ = model.forwardStep([StepSequence(ids: Array(prompt.dropLast()), spanStart: 0, cached: 0, adapter: adapter, logits: .none)], arena: arena)
            return model.forwardStep([StepSequence(ids: [prompt.last!], spanStart: 0, cached: prompt.count - 1, adapter: adapter,
                                                   logits: .last, decoding: true)], arena: arena).toArray()
        }
        let (f, h, base) = (logits(full), logits(half), logits(nil))
        let effect = zip(f, base).map { abs($0 - $1) }.max()!
        let worst = zip(f, h).map { abs($0 - $1) }.max()!
        XCTAssertGreaterThan(worst, 0, "the half-precision weights were read (seed \(seed))")
        XCTAssertLessThan(worst, 0.02 * effect, "seed \(seed): effect of the adapter \(effect)")

        let (engine, _) = try EngineFixtures.tinyEngine(configuration: EngineConfiguration(maxBatch: 2, contextLength: 64, halfPrecisionAdapters: true))
        defer { engine.shutdown() }
        _ = try engine.loadAdapter(name: "h", directory: dir)
        let served = try XCTUnwrap(engine.adapters.entries["h"]?.weights)
        XCTAssertTrue(served.layers.allSatisfy { $0.values.allSatisfy { $0.packed?.half == true } })
    }

    func checkPerRowAdapterLogits(_ path: String) throws {
        let seed = UInt64.random(in: 0 ... 1 << 40)
        var rng = SeededRandom(seed: seed)
        let (model, _) = try ModelLoader.load(path)
        let dirs = try (0 ..< 2).map { try EngineFixtures.randomAdapter(for: model, scale: 0.2, seed: seed &+ UInt64($0), name: "a\($0)") }
        let adapters = try dirs.map { try PEFTAdapter.loadDetached($0, for: model).0 }
        let vocab = model.config.vocabSize
        let prompts = [17, 9, 23].map { EngineFixtures.randomPrompt(&rng, length: $0, vocab: vocab) }
        let arena = KVArena(config: model.config, tokens: 256, backend: model.backend)
        // The third sequence's first 5 tokens are cached by an earlier step.
        _ = model.forwardStep([StepSequence(ids: Array(prompts[2][..<5]), spanStart: 128, cached: 0, adapter: adapters[1], logits: .none)], arena: arena)
        let step = model.forwardStep([
            StepSequence(ids: prompts[0], spanStart: 0, cached: 0, adapter: nil, logits: .all),
            StepSequence(ids: prompts[1], spanStart: 64, cached: 0, adapter: adapters[0], logits: .all),
            StepSequence(ids: Array(prompts[2][5...]), spanStart: 128, cached: 5, adapter: adapters[1], logits: .all),
        ], arena: arena).toArray()
        var want: [Float] = []
        for (i, prompt) in prompts.enumerated() {
            if i > 0 { try PEFTAdapter.load(dirs[i - 1], into: model) } else { model.detachLoRA() }
            if i == 2 {
                // A cached prefix as `Generator` runs it (dynamic NTK RoPE rotates
                // each step's tokens for the length so far, as transformers' cache does).
                let cache = KVCache(config: model.config, capacity: 64, backend: model.backend)
                _ = model.forward(ids: Array(prompt[..<5]), cache: cache)
                want += model.forward(ids: Array(prompt[5...]), cache: cache).toArray()
            } else {
                want += model.forward(ids: prompt).toArray()
            }
        }
        model.detachLoRA()
        XCTAssertEqual(step.count, want.count)
        let scale = want.map { abs($0) }.max()!
        let err = zip(step, want).map { abs($0 - $1) }.max()!
        XCTAssertLessThan(err / scale, 1e-5, "\(path) seed \(seed): max |Δ| \(err) of max |logit| \(scale)")
        // The adapters do change the logits (the test could fail).
        let base = model.forward(ids: prompts[1]).toArray()
        let offset = prompts[0].count * vocab
        let moved = zip(step[offset ..< offset + base.count], base).map { abs($0 - $1) }.max()!
        XCTAssertGreaterThan(moved / scale, 1e-3, "\(path) seed \(seed): the adapter made no difference")
    }

    /// Tiny model, base + 2 adapters mixed in one batch: greedy tokens equal
    /// each request alone, and equal `Generator` on the model with the adapter attached.
    func testTinyBatchedEqualsAloneAndAttachedLoRA() throws {
        let seed = UInt64.random(in: 0 ... 1 << 40)
        var rng = SeededRandom(seed: seed)
        let (engine, _) = try EngineFixtures.tinyEngine()
        defer { engine.shutdown() }
        let (reference, _) = try ModelLoader.load(EngineFixtures.tinyLlama)
        let dirs = try (0 ..< 2).map { try EngineFixtures.randomAdapter(for: reference, scale: 0.2, seed: seed &+ UInt64($0), name: "t\($0)") }
        for (i, d) in dirs.enumerated() { _ = try engine.loadAdapter(name: "a\(i)", directory: d) }
        let models: [String?] = [nil, "a0", "a1", nil, "a1", "a0", "a0"]
        let requests = models.enumerated().map { i, m in
            GenerationRequest(id: "r\(i)", model: m, prompt: EngineFixtures.randomPrompt(&rng, length: 3 + 5 * i, vocab: 256),
                              maxTokens: 12, ignoreEOS: true)
        }
        let batched = try engine.generate(requests)
        for (i, r) in requests.enumerated() {
            let alone = try engine.generate([r])[0]
            XCTAssertEqual(batched[i].choices[0].tokens, alone.choices[0].tokens, "seed \(seed): request \(i) (\(r.model ?? "base")) batched vs alone")
            if let m = r.model { try PEFTAdapter.load(dirs[m == "a0" ? 0 : 1], into: reference) } else { reference.detachLoRA() }
            let want = Generator(model: reference).generate(prompt: r.prompt, maxNewTokens: 12).tokens
            XCTAssertEqual(batched[i].choices[0].tokens, want, "seed \(seed): request \(i) vs Generator with the adapter attached")
            XCTAssertEqual(batched[i].choices[0].finishReason, .length)
            XCTAssertEqual(batched[i].usage, Usage(promptTokens: r.prompt.count, completionTokens: 12))
        }
        // Different adapters give different tokens somewhere (the test can fail).
        XCTAssertNotEqual(batched[1].choices[0].tokens, try engine.generate([GenerationRequest(prompt: requests[1].prompt, maxTokens: 12, ignoreEOS: true)])[0].choices[0].tokens)
        XCTAssertGreaterThanOrEqual(engine.metrics().maxAdaptersInOneStep, 3)
        XCTAssertEqual(engine.kvBlocksInUse, 0)
    }

    /// The real SmolLM2 with two random adapters: batched equals alone, token for token.
    func testSmolLM2BatchedEqualsAloneWithMixedAdapters() throws {
        let seed = UInt64.random(in: 0 ... 1 << 40)
        let engine = try BatchEngine(path: SharedTestPaths.smolLM2, configuration: EngineConfiguration(maxBatch: 8, contextLength: 512))
        defer { engine.shutdown() }
        let dirs = try (0 ..< 2).map { try EngineFixtures.randomAdapter(for: engine.model, rank: 8, alpha: 16, scale: 0.02, seed: seed &+ UInt64($0), name: "s\($0)") }
        for (i, d) in dirs.enumerated() { _ = try engine.loadAdapter(name: "a\(i)", directory: d) }
        let questions = ["What is the capital of France?", "Name three colours.", "Write a haiku about rain.",
                         "What is 12 times 7?", "Who wrote Hamlet?", "Say hello in Spanish."]
        let models: [String?] = [nil, "a0", "a1", "a0", nil, "a1"]
        let requests = try zip(questions, models).map { q, m in
            let prompt = try engine.render(ChatPrompt(messagesJSON: "[{\"role\": \"user\", \"content\": \"\(q)\"}]"), model: m)
            return GenerationRequest(model: m, prompt: prompt.tokens, maxTokens: 16)
        }
        let batched = try engine.generate(requests)
        for (i, r) in requests.enumerated() {
            let alone = try engine.generate([r])[0]
            XCTAssertEqual(batched[i].choices[0].tokens, alone.choices[0].tokens, "seed \(seed): request \(i) (\(r.model ?? "base"))")
            XCTAssertEqual(batched[i].choices[0].text, alone.choices[0].text)
        }
        XCTAssertFalse(batched[0].choices[0].text.isEmpty)
        XCTAssertGreaterThanOrEqual(engine.metrics().maxAdaptersInOneStep, 3)
    }
}
