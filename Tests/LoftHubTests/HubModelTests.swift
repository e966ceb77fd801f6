import Foundation
import XCTest
@testable import LoftHub
import LoftTestSupport

/// Downloads from a local stand-in for the Hub (Fixtures/fake_hub.py, run with
/// python3): the Hugging Face cache layout, reuse of cached files, the bearer
/// token, resuming a partial download, and the 401/404/no-network messages.
final class HubModelTests: XCTestCase {
    static let commit = "0123456789abcdef0123456789abcdef01234567"
    var work = ""
    var fake: FakeHub!
    var logPath: String { work + "/requests.log" }

    /// Starts the fake Hub serving a small sharded model; returns its endpoint.
    func startHub(token: String? = nil) throws -> String {
        work = FileManager.default.temporaryDirectory.appendingPathComponent("loft-hub-\(UUID().uuidString)").path
        let repo = work + "/served/org/tiny-model"
        try FileManager.default.createDirectory(atPath: repo, withIntermediateDirectories: true)
        try #"{"model_type": "llama"}"#.write(toFile: repo + "/config.json", atomically: true, encoding: .utf8)
        try #"{"eos_token_id": 2}"#.write(toFile: repo + "/generation_config.json", atomically: true, encoding: .utf8)
        try #"{"model": {}}"#.write(toFile: repo + "/tokenizer.json", atomically: true, encoding: .utf8)
        try "readme".write(toFile: repo + "/README.md", atomically: true, encoding: .utf8)
        let index = #"{"metadata": {}, "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}"#
        try index.write(toFile: repo + "/model.safetensors.index.json", atomically: true, encoding: .utf8)
        var rng = SeededRandom(seed: UInt64.random(in: 0 ... UInt64.max))
        for shard in ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"] {
            let bytes = (0 ..< 300_000).map { _ in UInt8.random(in: 0 ... 255, using: &rng) }
            try Data(bytes).write(to: URL(fileURLWithPath: repo + "/" + shard))
        }
        fake = try FakeHub(served: work + "/served", work: work, token: token)
        addTeardownBlock { [fake] in fake?.stop() }
        return fake.endpoint
    }

    func hub(_ endpoint: String, token: String? = nil, offline: Bool = false) -> HubModel {
        var env = fake.environment(token: token, offline: offline)
        env["HF_ENDPOINT"] = endpoint
        return HubModel(environment: env)
    }

    func requests() -> [String] {
        ((try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    func testDownloadsIntoTheHuggingFaceCacheAndReusesIt() throws {
        let endpoint = try startHub()
        var seen: [String: Int64] = [:]
        var h = hub(endpoint)
        h.progress = { file, done, _ in seen[file] = done }
        let dir = try h.snapshot("org/tiny-model")
        let repo = work + "/cache/models--org--tiny-model"
        XCTAssertEqual(dir, repo + "/snapshots/\(Self.commit)")
        XCTAssertEqual(try String(contentsOfFile: repo + "/refs/main", encoding: .utf8), Self.commit)
        for file in ["config.json", "generation_config.json", "tokenizer.json", "model.safetensors.index.json",
                     "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"] {
            let served = try Data(contentsOf: URL(fileURLWithPath: work + "/served/org/tiny-model/" + file))
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: dir + "/" + file)), served, file)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/README.md"), "only the files a model needs")
        XCTAssertEqual(seen["model-00001-of-00002.safetensors"], 300_000, "progress reports the bytes")
        XCTAssertTrue(requests().allSatisfy { $0.hasSuffix(" -") }, "no Authorization header without HF_TOKEN")

        // A second resolve asks for the revision only: every file is reused.
        let before = requests().count
        XCTAssertEqual(try hub(endpoint).snapshot("org/tiny-model"), dir)
        let after = Array(requests()[before...])
        XCTAssertEqual(after.count, 1, "\(after)")
        XCTAssertTrue(after[0].hasPrefix("GET /api/models/org/tiny-model/revision/main"), "\(after)")

        // Offline, the cached snapshot is used without any request.
        XCTAssertEqual(try hub(endpoint, offline: true).snapshot("org/tiny-model"), dir)
        XCTAssertEqual(requests().count, before + 1)
    }

    func testResumesAPartialDownloadWithARangeRequest() throws {
        let endpoint = try startHub()
        let file = "model-00002-of-00002.safetensors"
        let served = try Data(contentsOf: URL(fileURLWithPath: work + "/served/org/tiny-model/" + file))
        let snapshot = work + "/cache/models--org--tiny-model/snapshots/\(Self.commit)"
        try FileManager.default.createDirectory(atPath: snapshot, withIntermediateDirectories: true)
        try served.prefix(123_456).write(to: URL(fileURLWithPath: snapshot + "/" + file + ".incomplete"))
        let dir = try hub(endpoint).snapshot("org/tiny-model")
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: dir + "/" + file)), served)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/" + file + ".incomplete"))
        let ranged = requests().filter { $0.contains(file) }
        XCTAssertEqual(ranged.count, 1)
        XCTAssertTrue(ranged[0].contains("bytes=123456-"), "\(ranged)")
    }

    func testTokenIsSentAndMissingTokenExplainsGating() throws {
        let endpoint = try startHub(token: "hf_secret")
        XCTAssertThrowsError(try hub(endpoint).snapshot("org/tiny-model")) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("HTTP 401") && text.contains("https://huggingface.co/org/tiny-model") && text.contains("HF_TOKEN"), text)
        }
        let dir = try hub(endpoint, token: "hf_secret").snapshot("org/tiny-model")
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/config.json"))
        XCTAssertTrue(requests().last!.hasSuffix("Bearer hf_secret"), "\(requests().last!)")
    }

    func testNotFoundAndNoNetworkMessages() throws {
        let endpoint = try startHub()
        XCTAssertThrowsError(try hub(endpoint).snapshot("org/no-such-model")) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("HTTP 404") && text.contains("check the model id and the revision"), text)
        }
        XCTAssertThrowsError(try hub(endpoint, offline: true).snapshot("org/no-such-model")) { error in
            XCTAssertTrue("\(error)".contains("HF_HUB_OFFLINE"), "\(error)")
        }
        // Nothing listens on port 9 (discard) of localhost: a connection error.
        XCTAssertThrowsError(try hub("http://127.0.0.1:9").snapshot("org/tiny-model")) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("cannot reach the Hub") && text.contains("local model directory or .gguf"), text)
        }
    }

    func testHubIDsAreToldFromPaths() {
        XCTAssertTrue(HubModel.isHubID("HuggingFaceTB/SmolLM2-135M-Instruct"))
        XCTAssertFalse(HubModel.isHubID("model.gguf"))
        XCTAssertFalse(HubModel.isHubID("./outputs/run"))
        XCTAssertFalse(HubModel.isHubID("/abs/path"))
        XCTAssertFalse(HubModel.isHubID("a/b/c"))
        XCTAssertFalse(HubModel.isHubID("org/model.gguf"))
    }

    func testEnvironment() {
        let h = HubModel(environment: ["HF_HOME": "/x/hf", "HF_ENDPOINT": "https://mirror.example/"])
        XCTAssertEqual(h.cacheRoot, "/x/hf/hub")
        XCTAssertEqual(h.endpoint, "https://mirror.example")
        XCTAssertNil(h.token)
        XCTAssertFalse(h.offline)
        XCTAssertEqual(HubModel(environment: ["HF_HUB_CACHE": "/c", "HF_HOME": "/x"]).cacheRoot, "/c")
    }
}
