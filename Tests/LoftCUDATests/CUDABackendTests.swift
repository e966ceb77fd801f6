import Foundation
import LoftCUDA
import LoftTensors
import LoftTraining
import XCTest

/// The CUDA backend's checks. On a machine without a usable GPU the device
/// tests skip, saying why, and the rest prove that CUDA's absence is reported
/// rather than fatal. On a GPU machine every kernel and GEMM is compared with
/// the CPU backend on fresh random inputs (seed printed on failure), and one
/// training step of a tiny Llama must agree within bf16 tolerance.
final class CUDABackendTests: XCTestCase {
    static let probe = CUDAProbe.run()

    func device() throws -> CUDABackend {
        guard Self.probe.usable else { throw XCTSkip("no usable CUDA device: \(Self.probe.problem ?? "none found")") }
        let b = try CUDABackend()
        b.synchronizeEachLaunch = true
        return b
    }

    func testAbsentCUDAIsAReportNotACrash() throws {
        let p = CUDAProbe.run()
        if p.usable { throw XCTSkip("this machine has a usable GPU") }
        let problem = try XCTUnwrap(p.problem)
        XCTAssertFalse(problem.isEmpty)
        XCTAssertThrowsError(try CUDABackend()) { error in
            XCTAssertTrue("\(error)".contains(problem) || !"\(error)".isEmpty)
        }
    }

    func testDeviceCUDAFailsBeforeComputeWithoutAGPU() throws {
        if Self.probe.usable { throw XCTSkip("this machine has a usable GPU") }
        XCTAssertThrowsError(try ResolvedDevice.resolve(.cuda)) { error in
            XCTAssertTrue("\(error)".contains("device: cuda"), "\(error)")
            XCTAssertTrue("\(error)".contains("device: cpu"), "the message names the fix: \(error)")
        }
        let auto = try ResolvedDevice.resolve(.auto)
        XCTAssertEqual(auto.backend.device, .cpu)
        XCTAssertTrue(auto.note.hasPrefix("device: cpu"), auto.note)
    }

    func testDeviceKeyParses() throws {
        func load(_ device: String) throws -> TrainConfig {
            let path = FileManager.default.temporaryDirectory.appendingPathComponent("loft-device-\(UUID().uuidString).yaml").path
            try "base_model: m.gguf\ndatasets: [{path: d.jsonl}]\ndevice: \(device)\n".write(toFile: path, atomically: true, encoding: .utf8)
            return try TrainConfig.load(path: path)
        }
        XCTAssertEqual(try load("cuda").device, .cuda)
        XCTAssertEqual(try load("cpu").device, .cpu)
        XCTAssertEqual(try load("auto").device, .auto)
        XCTAssertThrowsError(try load("gpu")) { error in
            XCTAssertTrue("\(error)".contains("device: 'gpu' is not supported; use cuda, cpu or auto"), "\(error)")
        }
    }

    /// Visibility bookkeeping of the attention kernels, checked on the host.
    func testAttentionVisibilityRanges() {
        let spec = AttentionSpec(heads: 1, kvHeads: 1, headDim: 2, queryOffset: 2, segments: [0, 4], window: 3)
        let lo = CUDABackendHostHelpers.firstVisibleKeys(queries: 6, keys: 8, spec: spec)
        // Query i sits at position i + 2; segment [4, 8) starts at 4; window 3.
        XCTAssertEqual(lo, [0, 1, 4, 4, 4, 5])
        let end = CUDABackendHostHelpers.lastSeeingQueries(lo: lo, keys: 8)
        XCTAssertEqual(end, [1, 2, 2, 2, 5, 6, 6, 6])
    }

    func testNF4LayoutHighNibbleFirst() {
        // Codes 15 (1.0) then 0 (−1.0) in one byte: the first value is the high nibble.
        let values = NF4.dequantize(packed: [0xF0], absmax: [2], count: 2)
        XCTAssertEqual(values, [2, -2])
        let (packed, absmax) = NF4.quantize([2, -2, 0, 1], blocksize: 64)
        XCTAssertEqual(absmax, [2])
        XCTAssertEqual(packed[0], 0xF0)
    }

    /// The harness against a CPU stand-in: every check runs and passes (the
    /// stand-in computes the reference function), and nothing crashes. The
    /// bf16 "rounded operands" checks are exact here by construction.
    func testCheckHarnessOnACPUStandIn() {
        let checks = CUDAKernelChecks(backend: CPUStandIn())
        let results = checks.runAll()
        XCTAssertGreaterThan(results.count, 50)
        for r in results { XCTAssertTrue(r.passed, "\(r.name): error \(r.error) over \(r.tolerance) (seed \(checks.seed))") }
    }

    func testTrainingStepHarnessOnTwoCPUBackends() throws {
        let seed = UInt64.random(in: 1 ... UInt64.max)
        let results = try BackendAgreement.trainingStep(reference: CPUBackend(), candidate: CPUBackend(), seed: seed)
        XCTAssertEqual(results.count, 6)
        for r in results {
            XCTAssertLessThanOrEqual(r.error, 1e-6, "\(r.name) (seed \(seed))")
        }
    }

    func testKernelChecksAgainstCPU() throws {
        let checks = CUDAKernelChecks(backend: try device())
        for r in checks.runAll() {
            XCTAssertTrue(r.passed, "\(r.name): error \(r.error) over \(r.tolerance) (seed \(checks.seed))")
        }
    }

    func testTrainingStepMatchesCPU() throws {
        let gpu = try device()
        let seed = UInt64.random(in: 1 ... UInt64.max)
        for r in try BackendAgreement.trainingStep(reference: CPUBackend(), candidate: gpu, seed: seed) {
            XCTAssertTrue(r.passed, "\(r.name): error \(r.error) over \(r.tolerance) (seed \(seed))")
        }
    }

    /// Every kernel module compiles for sm_80 and sm_90 when NVRTC is on
    /// this machine (tools/check-kernels.sh installs it; CI runs that too).
    func testKernelsCompileWhereNVRTCIsPresent() throws {
        let compiler: KernelCompiler
        do { compiler = try KernelCompiler() } catch { throw XCTSkip("no NVRTC here: \(error)") }
        compiler.useCache = false
        for arch in [80, 90] {
            for module in KernelSources.all {
                XCTAssertNoThrow(try compiler.compile(module, arch: arch), "\(module.name) sm_\(arch)")
            }
        }
    }
}
