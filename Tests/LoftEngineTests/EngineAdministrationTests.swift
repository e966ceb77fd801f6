import Foundation
import XCTest
@testable import LoftEngine
import LoftFormats
import LoftModels
import LoftTestSupport

final class EngineAdministrationTests: XCTestCase {
    func testCancellationFreesKVBlocksWithinAStep() async throws {
        let (engine, _) = try EngineFixtures.tinyEngine()
        defer { engine.shutdown() }
        // A tiny model's 120 tokens take a few milliseconds on a fast CPU,
        // less than one look below: 10 ms a step makes them take over a second.
        engine.pauseAfterStepForTesting = 0.01
        let stream = try engine.submit(GenerationRequest(prompt: [30, 40, 50], maxTokens: 120, ignoreEOS: true))
        let task = Task {
            var n = 0
            for try await event in stream { if case .delta = event { n += 1 } }
            return n
        }
        // wait until it runs
        for _ in 0 ..< 200 where engine.kvBlocksInUse == 0 { try await Task.sleep(nanoseconds: 5_000_000) }
        XCTAssertGreaterThan(engine.kvBlocksInUse, 0)
        task.cancel()
        for _ in 0 ..< 400 where engine.kvBlocksInUse > 0 { try await Task.sleep(nanoseconds: 5_000_000) }
        XCTAssertEqual(engine.kvBlocksInUse, 0, "cancelling the stream frees the request's KV blocks")
        let produced = try await task.value
        XCTAssertLessThan(produced, 120)
        // The engine still serves.
        engine.pauseAfterStepForTesting = 0
        XCTAssertEqual(try engine.generate([GenerationRequest(prompt: [1, 2, 3], maxTokens: 4, ignoreEOS: true)])[0].choices[0].tokens.count, 4)
    }

    func testQueueFullAndPromptTooLong() throws {
        let (engine, _) = try EngineFixtures.tinyEngine(configuration: EngineConfiguration(maxBatch: 1, contextLength: 64, maxQueue: 1))
        defer { engine.shutdown() }
        var streams: [AsyncThrowingStream<GenerationEvent, Error>] = []
        var refused = 0
        for _ in 0 ..< 4 {
            do {
                streams.append(try engine.submit(GenerationRequest(prompt: [5, 6, 7], maxTokens: 50, ignoreEOS: true)))
            } catch EngineError.queueFull(let after) {
                XCTAssertGreaterThanOrEqual(after, 1)
                refused += 1
            }
        }
        XCTAssertGreaterThanOrEqual(refused, 1)
        XCTAssertThrowsError(try engine.submit(GenerationRequest(prompt: Array(repeating: 5, count: 60), maxTokens: 10))) {
            XCTAssertEqual($0 as? EngineError, .promptTooLong(tokens: 60, limit: 54))
        }
        XCTAssertThrowsError(try engine.submit(GenerationRequest(prompt: [999], maxTokens: 1))) {
            guard case EngineError.invalidRequest("prompt", _)? = $0 as? EngineError else { return XCTFail("\($0)") }
        }
        XCTAssertThrowsError(try engine.submit(GenerationRequest(model: "nope", prompt: [1], maxTokens: 1))) {
            XCTAssertEqual($0 as? EngineError, .unknownModel("nope"))
        }
        streams.removeAll()
    }

    func rejection(_ engine: BatchEngine, _ dir: String) -> String? {
        do { _ = try engine.loadAdapter(name: "bad", directory: dir); return nil } catch {
            guard case EngineError.adapterRejected(let name, let reason) = error else { return "unexpected \(error)" }
            XCTAssertEqual(name, "bad")
            return reason
        }
    }

    func writeAdapter(_ tensors: [(String, [Int])], config: [String: Any]) throws -> String {
        let dir = EngineFixtures.tempDirectory("bad")
        var writer = SafetensorsWriter()
        for (name, shape) in tensors { try writer.add(name: name, shape: shape, floats: Array(repeating: 0.01, count: shape.reduce(1, *))) }
        try writer.write(to: dir + "/adapter_model.safetensors")
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: dir + "/adapter_config.json"))
        return dir
    }

    func testAdaptersAreCheckedAtLoad() throws {
        let (engine, _) = try EngineFixtures.tinyEngine()
        defer { engine.shutdown() }
        let p = "base_model.model.model.layers.0.self_attn.q_proj"
        let good: [String: Any] = ["peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj"]]
        // wrong shapes (another model's hidden size)
        var reason = rejection(engine, try writeAdapter([(p + ".lora_A.weight", [2, 96]), (p + ".lora_B.weight", [64, 2])], config: good))
        XCTAssertTrue(reason?.contains("[2, 96]") == true && reason?.contains("another base") == true, reason ?? "accepted")
        // a tensor for a module the model does not have
        reason = rejection(engine, try writeAdapter([(p + ".lora_A.weight", [2, 64]), (p + ".lora_B.weight", [64, 2]),
                                                     ("base_model.model.model.layers.0.mlp.foo.lora_A.weight", [2, 64]),
                                                     ("base_model.model.model.layers.0.mlp.foo.lora_B.weight", [64, 2])], config: good))
        XCTAssertTrue(reason?.contains("match no module") == true, reason ?? "accepted")
        // a target module the engine does not know
        var config = good
        config["target_modules"] = ["q_proj", "foo_proj"]
        reason = rejection(engine, try writeAdapter([(p + ".lora_A.weight", [2, 64]), (p + ".lora_B.weight", [64, 2])], config: config))
        XCTAssertTrue(reason?.contains("foo_proj") == true, reason ?? "accepted")
        // a target module listed but without weights
        config["target_modules"] = ["q_proj", "v_proj"]
        reason = rejection(engine, try writeAdapter([(p + ".lora_A.weight", [2, 64]), (p + ".lora_B.weight", [64, 2])], config: config))
        XCTAssertTrue(reason?.contains("v_proj") == true, reason ?? "accepted")
        // DoRA, rank, missing directory
        config = good; config["use_dora"] = true
        reason = rejection(engine, try writeAdapter([(p + ".lora_A.weight", [2, 64]), (p + ".lora_B.weight", [64, 2])], config: config))
        XCTAssertTrue(reason?.contains("DoRA") == true, reason ?? "accepted")
        XCTAssertNotNil(rejection(engine, "/nonexistent/adapter"))
        // NaN weights
        let dir = EngineFixtures.tempDirectory("nan")
        var writer = SafetensorsWriter()
        try writer.add(name: p + ".lora_A.weight", shape: [2, 64], floats: [Float.nan] + Array(repeating: 0, count: 127))
        try writer.add(name: p + ".lora_B.weight", shape: [64, 2], floats: Array(repeating: 0, count: 128))
        try writer.write(to: dir + "/adapter_model.safetensors")
        try JSONSerialization.data(withJSONObject: good).write(to: URL(fileURLWithPath: dir + "/adapter_config.json"))
        reason = rejection(engine, dir)
        XCTAssertTrue(reason?.contains("NaN") == true, reason ?? "accepted")
        // The good one loads, and nothing was left attached to the base.
        _ = try engine.loadAdapter(name: "ok", directory: try writeAdapter([(p + ".lora_A.weight", [2, 64]), (p + ".lora_B.weight", [64, 2])], config: good))
        XCTAssertTrue(engine.model.adapterSlots.isEmpty)
        XCTAssertEqual(engine.models.map(\.name), ["tiny", "ok"])
        try engine.unloadAdapter(name: "ok")
        XCTAssertEqual(engine.models.map(\.name), ["tiny"])
    }

    /// With room for two adapters, loading a third drops the least recently
    /// used one's weights; a request naming it reloads it, same tokens.
    func testLeastRecentlyUsedAdapterIsDroppedAndReloaded() throws {
        let (engine, model) = try EngineFixtures.tinyEngine(configuration: EngineConfiguration(maxBatch: 4, contextLength: 64, maxAdapters: 2))
        defer { engine.shutdown() }
        let (scratch, _) = try ModelLoader.load(EngineFixtures.tinyLlama)
        _ = model
        let dirs = try (0 ..< 3).map { try EngineFixtures.randomAdapter(for: scratch, scale: 0.2, seed: 40 + UInt64($0), name: "lru\($0)") }
        let request = GenerationRequest(model: "a0", prompt: [10, 20, 30], maxTokens: 8, ignoreEOS: true)
        _ = try engine.loadAdapter(name: "a0", directory: dirs[0])
        let before = try engine.generate([request])[0].choices[0].tokens
        _ = try engine.loadAdapter(name: "a1", directory: dirs[1])
        _ = try engine.loadAdapter(name: "a2", directory: dirs[2])
        engine.state.lock()
        let resident = engine.adapters.entries.filter { $0.value.weights != nil }.map(\.key).sorted()
        engine.state.unlock()
        XCTAssertEqual(resident, ["a1", "a2"])
        XCTAssertEqual(engine.models.count, 4, "an evicted adapter is still served")
        XCTAssertEqual(try engine.generate([request])[0].choices[0].tokens, before)
        engine.state.lock()
        XCTAssertNil(engine.adapters.entries["a1"]!.weights, "a1 was the least recently used")
        engine.state.unlock()
    }

    func testRenderUsesTheAdaptersOwnTemplate() throws {
        let (engine, model) = try EngineFixtures.tinyEngine()
        defer { engine.shutdown() }
        let dir = try EngineFixtures.randomAdapter(for: model, seed: 3, name: "tmpl")
        try "{% for m in messages %}<<{{ m.role }}>>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<<assistant>>{% endif %}"
            .write(toFile: dir + "/chat_template.jinja", atomically: true, encoding: .utf8)
        _ = try engine.loadAdapter(name: "t", directory: dir)
        let chat = ChatPrompt(messagesJSON: #"[{"role": "user", "content": "hi"}]"#)
        XCTAssertEqual(try engine.render(chat, model: "t").text, "<<user>>hi<<assistant>>")
        XCTAssertTrue(try engine.render(chat, model: nil).text.contains("<|im_start|>user"))
        XCTAssertThrowsError(try engine.render(ChatPrompt(messagesJSON: "{}"), model: nil))
    }
}
