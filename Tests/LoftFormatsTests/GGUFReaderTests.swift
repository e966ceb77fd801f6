import XCTest
@testable import LoftFormats

final class GGUFReaderTests: XCTestCase {
    func testReadsRealSmolLM2Header() throws {
        let f = try GGUFFile(path: TestPaths.smolLM2)
        XCTAssertEqual(f.version, 3)
        XCTAssertEqual(f.architecture, "llama")
        XCTAssertEqual(f.metadata["llama.block_count"]?.int, 30)
        XCTAssertEqual(f.metadata["llama.embedding_length"]?.int, 576)
        XCTAssertEqual(f.metadata["llama.attention.head_count"]?.int, 9)
        XCTAssertEqual(f.metadata["llama.attention.head_count_kv"]?.int, 3)
        XCTAssertEqual(f.metadata["tokenizer.ggml.tokens"]?.array?.count, 49152)
        XCTAssertEqual(f.metadata["tokenizer.ggml.pre"]?.string, "smollm")
        // The fixtures README: 210 Q4_1, 1 Q8_0, 61 F32 tensors.
        let counts = Dictionary(grouping: f.tensors, by: \.type).mapValues(\.count)
        XCTAssertEqual(counts[.q4_1], 210)
        XCTAssertEqual(counts[.q8_0], 1)
        XCTAssertEqual(counts[.f32], 61)
        let embd = try XCTUnwrap(f.tensor(named: "token_embd.weight"))
        XCTAssertEqual(embd.shape, [49152, 576])
    }
}
