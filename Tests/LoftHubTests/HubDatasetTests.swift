import Foundation
import XCTest
@testable import LoftHub
import LoftTestSupport

/// Hub datasets against the fake Hub: the split's own Parquet files, the Hub's
/// Parquet conversion as a fallback, configs, data_files, the cache layout and
/// its reuse offline, resume, the token, and the 401/404 messages.
final class HubDatasetTests: XCTestCase {
    static let commit = "0123456789abcdef0123456789abcdef01234567"
    static let convertCommit = "fedcba9876543210fedcba9876543210fedcba98"
    var work = ""
    var fake: FakeHub!

    /// Serves org/chat (its own Parquet files in two splits) and org/scripted
    /// (a loader script only; its data in the Hub's Parquet conversion, two configs).
    func startHub(token: String? = nil) throws -> String {
        work = FileManager.default.temporaryDirectory.appendingPathComponent("loft-hubds-\(UUID().uuidString)").path
        let served = work + "/served/datasets"
        var rng = SeededRandom(seed: UInt64.random(in: 0 ... UInt64.max))
        func put(_ rel: String, size: Int = 5_000) throws {
            let path = served + "/" + rel
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try Data((0 ..< size).map { _ in UInt8.random(in: 0 ... 255, using: &rng) }).write(to: URL(fileURLWithPath: path))
        }
        for f in ["data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet", "data/test-00000-of-00001.parquet"] {
            try put("org/chat/main/" + f, size: 200_000)
        }
        try put("org/chat/main/README.md")
        try put("org/scripted/main/scripted.py")
        for f in ["en/train/0000.parquet", "en/train/0001.parquet", "en/validation/0000.parquet", "de/train/0000.parquet"] {
            try put("org/scripted/convert/" + f)
        }
        fake = try FakeHub(served: work + "/served", work: work, token: token)
        addTeardownBlock { [fake] in fake?.stop() }
        return fake.endpoint
    }

    func datasets(_ endpoint: String, token: String? = nil, offline: Bool = false) -> HubDataset {
        var env = fake.environment(token: token, offline: offline)
        env["HF_ENDPOINT"] = endpoint
        return HubDataset(environment: env)
    }

    func served(_ rel: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: work + "/served/datasets/" + rel)) }

    func testDownloadsTheSplitsOwnParquetFilesIntoTheCache() throws {
        let endpoint = try startHub()
        var d = datasets(endpoint)
        var seen: [String: Int64] = [:]
        d.hub.progress = { file, done, _ in seen[file] = done }
        let files = try d.files("org/chat")
        let snapshot = work + "/cache/datasets--org--chat/snapshots/\(Self.commit)"
        XCTAssertEqual(files, [snapshot + "/data/train-00000-of-00002.parquet", snapshot + "/data/train-00001-of-00002.parquet"])
        for f in files {
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: f)), try served("org/chat/main/data/" + (f as NSString).lastPathComponent))
        }
        XCTAssertEqual(try String(contentsOfFile: work + "/cache/datasets--org--chat/refs/main", encoding: .utf8), Self.commit)
        XCTAssertEqual(seen["data/train-00000-of-00002.parquet"], 200_000, "progress reports the bytes")
        XCTAssertEqual(try d.files("org/chat", split: "test"), [snapshot + "/data/test-00000-of-00001.parquet"])

        // Again: one revision request, every file reused.
        let before = fake.requests().count
        XCTAssertEqual(try datasets(endpoint).files("hf://datasets/org/chat"), files)
        let after = Array(fake.requests()[before...])
        XCTAssertEqual(after.count, 1, "\(after)")
        XCTAssertTrue(after[0].hasPrefix("GET /api/datasets/org/chat/revision/main"), "\(after)")
        // Offline: the cache, no request at all; a split never downloaded is an error saying so.
        XCTAssertEqual(try datasets(endpoint, offline: true).files("org/chat"), files)
        XCTAssertEqual(fake.requests().count, before + 1)
        XCTAssertThrowsError(try datasets(endpoint, offline: true).files("org/chat", split: "validation")) { e in
            XCTAssertTrue("\(e)".contains("HF_HUB_OFFLINE") && "\(e)".contains("'validation'"), "\(e)")
        }
        // No network: the cache too.
        XCTAssertEqual(try datasets("http://127.0.0.1:9").files("org/chat"), files)
    }

    func testFallsBackToTheHubsParquetConversionAndItsConfigs() throws {
        let endpoint = try startHub()
        let d = datasets(endpoint)
        XCTAssertThrowsError(try d.files("org/scripted")) { e in
            XCTAssertTrue("\(e)".contains("several configs (de, en)") && "\(e)".contains("`name:`"), "\(e)")
        }
        let en = try d.files("org/scripted", config: "en")
        let snapshot = work + "/cache/datasets--org--scripted/snapshots/\(Self.convertCommit)"
        XCTAssertEqual(en, [snapshot + "/en/train/0000.parquet", snapshot + "/en/train/0001.parquet"])
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: en[1])), try served("org/scripted/convert/en/train/0001.parquet"))
        XCTAssertEqual(try String(contentsOfFile: work + "/cache/datasets--org--scripted/refs/refs/convert/parquet", encoding: .utf8), Self.convertCommit)
        XCTAssertEqual(try d.files("org/scripted", config: "en", split: "validation"), [snapshot + "/en/validation/0000.parquet"])
        XCTAssertEqual(try datasets(endpoint, offline: true).files("org/scripted", config: "en"), en)
        XCTAssertThrowsError(try d.files("org/scripted", config: "fr")) { e in
            XCTAssertTrue("\(e)".contains("no data files for split 'train' of config 'fr'") && "\(e)".contains("`split:`"), "\(e)")
        }
    }

    func testDataFilesPatternsChooseFiles() throws {
        let endpoint = try startHub()
        let files = try datasets(endpoint).files("org/chat", dataFiles: ["data/*-00001-*.parquet"])
        XCTAssertEqual(files.map { ($0 as NSString).lastPathComponent }, ["train-00001-of-00002.parquet"])
    }

    func testResumesAPartialDownload() throws {
        let endpoint = try startHub()
        let file = "data/train-00001-of-00002.parquet"
        let bytes = try served("org/chat/main/" + file)
        let snapshot = work + "/cache/datasets--org--chat/snapshots/\(Self.commit)"
        try FileManager.default.createDirectory(atPath: snapshot + "/data", withIntermediateDirectories: true)
        try bytes.prefix(77_777).write(to: URL(fileURLWithPath: snapshot + "/" + file + ".incomplete"))
        let files = try datasets(endpoint).files("org/chat")
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: files[1])), bytes)
        let ranged = fake.requests().filter { $0.contains("train-00001") }
        XCTAssertEqual(ranged.count, 1)
        XCTAssertTrue(ranged[0].contains("bytes=77777-"), "\(ranged)")
    }

    func testTokenAndErrorsSayTheFix() throws {
        let endpoint = try startHub(token: "hf_secret")
        XCTAssertThrowsError(try datasets(endpoint).files("org/chat")) { e in
            let s = "\(e)"
            XCTAssertTrue(s.contains("HTTP 401") && s.contains("https://huggingface.co/datasets/org/chat") && s.contains("HF_TOKEN is not set"), s)
        }
        XCTAssertEqual(try datasets(endpoint, token: "hf_secret").files("org/chat").count, 2)
        XCTAssertTrue(fake.requests().last!.hasSuffix("Bearer hf_secret"))
        XCTAssertThrowsError(try datasets(endpoint, token: "hf_secret").files("org/nothing")) { e in
            let s = "\(e)"
            XCTAssertTrue(s.contains("HTTP 404") && s.contains("check the name") && s.contains("local path"), s)
        }
    }

    func testHubIDsAreToldFromLocalPaths() throws {
        XCTAssertTrue(HubDataset.isHubID("HuggingFaceH4/ultrachat_200k"))
        XCTAssertTrue(HubDataset.isHubID("hf://datasets/org/name"))
        XCTAssertFalse(HubDataset.isHubID("data/train.jsonl"), "a missing local file is not a Hub id")
        XCTAssertFalse(HubDataset.isHubID("data/train.parquet"))
        XCTAssertFalse(HubDataset.isHubID("data/*.jsonl"))
        XCTAssertFalse(HubDataset.isHubID("./org/name"))
        XCTAssertFalse(HubDataset.isHubID("a/b/c"))
        // A local directory named like a Hub id wins.
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("loft-hubid-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("org/name"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let cwd = FileManager.default.currentDirectoryPath
        XCTAssertTrue(FileManager.default.changeCurrentDirectoryPath(dir.path))
        defer { _ = FileManager.default.changeCurrentDirectoryPath(cwd) }
        XCTAssertFalse(HubDataset.isHubID("org/name"))
        XCTAssertTrue(HubDataset.isHubID("org/other"))
    }
}
