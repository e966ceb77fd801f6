import Foundation
import LoftTestSupport
import XCTest
@testable import LoftData

/// A dataset entry naming a Hub dataset trains like the same Parquet file on disk.
final class HubDataTests: XCTestCase {
    func testAHubDatasetEntryBuildsLikeItsLocalFile() throws {
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("loft-hubdata-\(UUID().uuidString)").path
        let local = TestPaths.fixtures.appendingPathComponent("parquet/conversations.parquet").path
        let served = work + "/served/datasets/org/chat/main/data"
        try FileManager.default.createDirectory(atPath: served, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: local, toPath: served + "/train-00000-of-00001.parquet")
        let fake = try FakeHub(served: work + "/served", work: work)
        addTeardownBlock { fake.stop() }
        // datasetFiles reads the process environment, as `loft train` does.
        let saved = ["HF_ENDPOINT", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_TOKEN"].map { ($0, ProcessInfo.processInfo.environment[$0]) }
        defer { for (k, v) in saved { if let v { setenv(k, v, 1) } else { unsetenv(k) } } }
        for (k, v) in fake.environment() { setenv(k, v, 1) }
        unsetenv("HF_HUB_OFFLINE"); unsetenv("HF_TOKEN")

        let b = try DatasetBuilder(tokenizer: Shared.tokenizer, options: DataOptions(sequenceLen: 1024))
        let fromHub = try b.build([DatasetSpec(path: "org/chat")])
        let fromDisk = try b.build([DatasetSpec(path: local)])
        XCTAssertEqual(fromHub.train, fromDisk.train)
        XCTAssertTrue(fromHub.stats[0].files[0].hasSuffix("datasets--org--chat/snapshots/0123456789abcdef0123456789abcdef01234567/data/train-00000-of-00001.parquet"),
                      "\(fromHub.stats[0].files)")
        XCTAssertThrowsError(try b.build([DatasetSpec(path: "org/chat", split: "test")])) { e in
            XCTAssertTrue("\(e)".contains("no data files for split 'test'") && "\(e)".contains("train-00000-of-00001.parquet"), "\(e)")
        }
        XCTAssertThrowsError(try b.build([DatasetSpec(path: "org/missing")])) { e in
            XCTAssertTrue("\(e)".contains("HTTP 404"), "\(e)")
        }
    }
}
