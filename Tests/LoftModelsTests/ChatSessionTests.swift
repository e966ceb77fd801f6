import Foundation
import XCTest
import LoftInference
import LoftModels

/// `loft chat`'s session, driven line by line as the REPL does, against
/// independent one-shot generations (what `loft generate --chat` runs) for the
/// same history, on the real SmolLM2 with its chat template.
final class ChatSessionTests: XCTestCase {
    static let adapterSource = TestPaths.repoRoot.appendingPathComponent("Tests/LoftTrainingTests/Fixtures/smollm2/initial_adapter")

    /// The fixture adapter with lora_alpha raised so that it visibly changes the replies.
    func strongAdapter() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("loft-chat-adapter-\(UUID().uuidString)")
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: Self.adapterSource.appendingPathComponent("adapter_model.safetensors"),
                                         to: dir.appendingPathComponent("adapter_model.safetensors"))
        var config = try JSONSerialization.jsonObject(with: Data(contentsOf: Self.adapterSource.appendingPathComponent("adapter_config.json"))) as! [String: Any]
        config["lora_alpha"] = 4000
        try JSONSerialization.data(withJSONObject: config).write(to: dir.appendingPathComponent("adapter_config.json"))
        return dir.path
    }

    func testScriptedConversationMatchesOneShotGeneration() throws {
        let lm = try LanguageModel(path: TestPaths.smolLM2)
        let adapter = try strongAdapter()
        let session = ChatSession(model: lm, system: "You are terse.", maxNewTokens: 5)
        var streamed = ""
        func say(_ line: String) -> String {
            streamed = ""
            guard case .reply(let r) = session.handle(line: line, onText: { streamed += $0 }) else {
                XCTFail("\(line) gave no reply"); return ""
            }
            XCTAssertEqual(streamed, r, "the streamed pieces make up the reply")
            return r
        }
        // What `loft generate --chat --system S --prompt P` computes, on a separate call.
        func oneShot(_ messages: [(role: String, content: String)]) throws -> String {
            lm.generate(prompt: try lm.promptIDs(messages: messages), maxNewTokens: 5).text
        }

        let r1 = say("What is the capital of France?")
        let r2 = say("And of Italy?")
        XCTAssertEqual(r1, try oneShot([("system", "You are terse."), ("user", "What is the capital of France?")]))
        XCTAssertEqual(r2, try oneShot([("system", "You are terse."), ("user", "What is the capital of France?"),
                                        ("assistant", r1), ("user", "And of Italy?")]))
        XCTAssertEqual(session.history.count, 4)

        XCTAssertEqual(session.handle(line: "/reset"), .info("history cleared"))
        XCTAssertTrue(session.history.isEmpty)
        XCTAssertEqual(say("What is the capital of France?"), r1, "after /reset the first turn repeats")

        // /adapter attaches LoRA to the loaded model; the reply equals a model loaded with that adapter.
        guard case .info(let attached) = session.handle(line: "/adapter \(adapter)") else { return XCTFail() }
        XCTAssertTrue(attached.contains("attached"), attached)
        session.reset()
        let withAdapter = say("What is the capital of France?")
        XCTAssertNotEqual(withAdapter, r1, "the strong adapter must change the reply for this check to mean anything")
        let reference = try LanguageModel(path: TestPaths.smolLM2, adapter: adapter)
        XCTAssertEqual(withAdapter, reference.generate(prompt: try reference.promptIDs(messages: [("system", "You are terse."), ("user", "What is the capital of France?")]), maxNewTokens: 5).text)

        // A bad adapter path is reported and leaves the attached adapter in place.
        guard case .info(let bad) = session.handle(line: "/adapter /nonexistent/adapter") else { return XCTFail() }
        XCTAssertTrue(bad.contains("error"), bad)
        XCTAssertEqual(lm.adapter, adapter)

        XCTAssertEqual(session.handle(line: "/adapter none"), .info("adapter detached"))
        session.reset()
        XCTAssertEqual(say("What is the capital of France?"), r1, "detaching restores the base model")

        XCTAssertEqual(session.handle(line: "/system Be verbose."), .info("system message set; history cleared"))
        XCTAssertEqual(session.messages.first?.content, "Be verbose.")
        XCTAssertEqual(session.handle(line: "/quit"), .quit)
        guard case .info(let unknown) = session.handle(line: "/frobnicate") else { return XCTFail() }
        XCTAssertTrue(unknown.contains("unknown command"))
    }
}
