import XCTest
import LoftModels
import LoftTensors

/// `loft bench --profile`'s timing backend changes no number and counts what
/// ran: the tiny Llama's logits through it equal the CPU backend's bit for
/// bit, and its GEMM entries have the calls and flops the shapes imply.
final class ProfilingBackendTests: XCTestCase {
    func testSameLogitsAndCountedOperations() throws {
        let path = TestPaths.fixtures.appendingPathComponent("tiny/llama").path
        let (plain, _) = try ModelLoader.load(path)
        let profiler = ProfilingBackend(CPUBackend.shared)
        let (profiled, _) = try ModelLoader.load(path, backend: profiler)
        let n = Int.random(in: 5 ... 40)
        let ids = (0 ..< n).map { _ in Int32.random(in: 0 ..< 256) }
        XCTAssertEqual(profiled.forward(ids: ids).toArray().map(\.bitPattern), plain.forward(ids: ids).toArray().map(\.bitPattern))

        let c = profiled.config
        let entries = profiler.report()
        XCTAssertEqual(entries.map(\.seconds), entries.map(\.seconds).sorted(by: >), "longest first")
        let q = try XCTUnwrap(entries.first { $0.operation == "linear" && $0.shape == "\(n)x\(c.hiddenSize) → \(c.heads * c.headDim)" })
        XCTAssertEqual(q.calls, c.layers * (c.heads == c.kvHeads ? 3 : 1) + (c.heads * c.headDim == c.hiddenSize ? c.layers : 0),
                       "q (and k, v, o when they share the shape) once per layer")
        XCTAssertEqual(q.flops, Double(q.calls) * 2 * Double(n * c.hiddenSize * c.heads * c.headDim))
        let up = try XCTUnwrap(entries.first { $0.operation == "linear" && $0.shape == "\(n)x\(c.hiddenSize) → \(c.intermediateSize)" })
        XCTAssertEqual(up.calls, 2 * c.layers, "gate and up")
        XCTAssertEqual(entries.first { $0.operation == "attention" }?.calls, c.layers)
        XCTAssertEqual(entries.first { $0.operation == "rmsNorm" }?.calls, 2 * c.layers + 1)
        profiler.reset()
        XCTAssertTrue(profiler.report().isEmpty)
    }
}
