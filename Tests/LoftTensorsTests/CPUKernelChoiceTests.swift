import Foundation
import XCTest
@testable import LoftTensors

/// How the bf16 GEMM kernel is chosen: the environment variable wins, then
/// the ratio cached for this CPU model, then a measurement that is cached.
final class CPUKernelChoiceTests: XCTestCase {
    func testEnvironmentThenCacheThenMeasurement() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("loft-kernel-choice-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let env = ["XDG_CACHE_HOME": dir.path]
        let file = CPUKernelChoice.cacheFile(environment: env)
        XCTAssertEqual(file.path, dir.path + "/loft/cpu-kernels.json")

        let forcedOff = CPUKernelChoice.decide(environment: env.merging(["LOFT_BF16_GEMM": "sgemm"]) { $1 })
        XCTAssertFalse(forcedOff.bf16Kernel)
        XCTAssertEqual(forcedOff.reason, "LOFT_BF16_GEMM=sgemm")
        let forcedOn = CPUKernelChoice.decide(environment: env.merging(["LOFT_BF16_GEMM": "kernel"]) { $1 })
        XCTAssertEqual(forcedOn.bf16Kernel, CPUGEMM.bf16KernelAvailable, "forced on only where the CPU has the instructions")

        guard CPUGEMM.bf16KernelAvailable else {
            let d = CPUKernelChoice.decide(environment: env)
            XCTAssertFalse(d.bf16Kernel)
            XCTAssertFalse(FileManager.default.fileExists(atPath: file.path), "nothing to measure, nothing cached")
            return
        }
        // A cached ratio decides without measuring, on either side of the threshold.
        try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
        for (ratio, kernel) in [(0.5, false), (2.0, true)] {
            try JSONSerialization.data(withJSONObject: [CPUKernelChoice.cpuModel(): ratio]).write(to: file)
            let d = CPUKernelChoice.decide(environment: env)
            XCTAssertEqual(d.bf16Kernel, kernel, "cached ratio \(ratio)")
            XCTAssertEqual(d.bf16FlopsRatio, ratio)
        }
        // Without a cached ratio it measures (a ratio well above 0) and writes it for the next process.
        try FileManager.default.removeItem(at: file)
        let measured = CPUKernelChoice.decide(environment: env)
        let ratio = try XCTUnwrap(measured.bf16FlopsRatio)
        XCTAssertGreaterThan(ratio, 0.2)
        XCTAssertEqual(measured.bf16Kernel, ratio >= CPUKernelChoice.threshold)
        let cached = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: file)) as? [String: Double])
        // (JSON's decimal form may differ from the double in the last bit.)
        XCTAssertEqual(try XCTUnwrap(cached[CPUKernelChoice.cpuModel()]), ratio, accuracy: 1e-12 * ratio)
    }
}
