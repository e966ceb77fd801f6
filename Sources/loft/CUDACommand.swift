import ArgumentParser
import Foundation
import LoftCUDA
import LoftTensors
import LoftTraining

/// `loft info --devices`: the CPU and the kernels Loft chose for it, the CUDA devices, or why there are none.
enum DeviceReport {
    static func print(json: Bool) {
        let p = CUDAProbe.run()
        if json {
            var out: [String: Any] = [
                "devices": p.devices.map { d in
                    ["index": d.index, "name": d.name, "compute_capability": "\(d.computeCapability.major).\(d.computeCapability.minor)",
                     "memory_bytes": d.totalMemory, "multiprocessors": d.multiprocessors] as [String: Any]
                },
                "usable": p.usable,
            ]
            if let v = p.driverVersion { out["driver_cuda_version"] = CUDAProbe.versionString(v) }
            if let path = p.driverPath { out["driver"] = path }
            if let path = p.nvrtcPath { out["nvrtc"] = path }
            if let path = p.cublasLtPath { out["cublaslt"] = path }
            if let problem = p.problem { out["problem"] = problem }
            out["cpu"] = ["model": CPUKernelChoice.cpuModel(), "threads": CPUBackend.threads,
                          "elementwise_kernels": CPUKernelChoice.elementwiseISA, "bf16_gemm": CPUKernelChoice.bf16.reason] as [String: Any]
            printJSON(out)
            return
        }
        Swift.print("cpu        \(CPUKernelChoice.cpuModel()), \(CPUBackend.threads) threads, \(CPUKernelChoice.elementwiseISA) elementwise kernels")
        Swift.print("           bf16 GEMMs: \(CPUKernelChoice.bf16.reason)")
        if let path = p.driverPath {
            Swift.print("driver     \(path)\(p.driverVersion.map { " (CUDA \(CUDAProbe.versionString($0)))" } ?? "")")
        }
        for d in p.devices {
            Swift.print(String(format: "cuda:%d     %@, compute capability %d.%d (sm_%d), %.1f GiB, %d SMs", d.index, d.name,
                               d.computeCapability.major, d.computeCapability.minor, d.arch, Double(d.totalMemory) / 1_073_741_824,
                               d.multiprocessors))
        }
        if let path = p.nvrtcPath { Swift.print("nvrtc      \(path)\(p.nvrtcVersion.map { " (\($0.major).\($0.minor))" } ?? "")") }
        if let path = p.cublasLtPath { Swift.print("cublasLt   \(path)") }
        if let problem = p.problem {
            Swift.print("no usable CUDA device: \(problem)")
            Swift.print("training runs on the CPU (device: auto); this is not an error")
        }
    }
}

/// Hidden commands for developing and checking the CUDA backend.
struct CUDACommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cuda", abstract: "Check the CUDA backend (for developers).", shouldDisplay: false,
        subcommands: [CompileKernels.self, SelfTest.self, Bench.self])

    /// Compiles every kernel module with Loft's own NVRTC path; CI runs this
    /// for sm_80 and sm_90 without a GPU (tools/check-kernels.sh).
    struct CompileKernels: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "compile-kernels",
                                                        abstract: "Compile every CUDA kernel with NVRTC (no GPU needed).")
        @Option(help: "Target architecture, e.g. sm_90 (repeatable).")
        var arch: [String] = ["sm_80", "sm_90"]
        @Flag(help: "Compile even when the kernel cache holds a result.")
        var noCache = false

        func run() throws {
            let compiler = try KernelCompiler()
            compiler.useCache = !noCache
            writeErr("nvrtc \(compiler.libraryPath) (\(compiler.version.major).\(compiler.version.minor))")
            var failures: [String] = []
            for a in arch {
                guard let number = Int(a.replacingOccurrences(of: "sm_", with: "").replacingOccurrences(of: "compute_", with: "")) else {
                    throw ValidationError("--arch \(a): expected sm_<number>, e.g. sm_90")
                }
                for module in KernelSources.all {
                    do {
                        let image = try compiler.compile(module, arch: number)
                        print("ok   \(module.name) \(image.target) \(image.bytes.count) bytes\(image.fromCache ? " (cached)" : "")")
                    } catch {
                        print("FAIL \(module.name) sm_\(number)\n\(error)")
                        failures.append("\(module.name) sm_\(number)")
                    }
                }
            }
            if !failures.isEmpty {
                writeErr("\(failures.count) kernel module(s) did not compile: \(failures.joined(separator: ", "))")
                throw ExitCode(1)
            }
        }
    }

    /// Every kernel against the CPU backend, then one training step.
    struct SelfTest: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "selftest",
                                                        abstract: "Compare every CUDA kernel and a training step with the CPU backend.")
        @Option(help: "CUDA device index.") var device = 0
        @Option(help: "Seed for the random inputs (default: a fresh one, printed).") var seed: UInt64?

        func run() throws {
            let gpu = try CUDABackend(deviceIndex: device)
            gpu.synchronizeEachLaunch = true
            print("backend \(gpu.name)")
            for image in gpu.kernelImages {
                print("kernels \(image.module): \(image.target)\(image.isCUBIN ? " cubin" : " ptx")\(image.fromCache ? " (cached)" : "")")
            }
            let checks = CUDAKernelChecks(backend: gpu, seed: seed)
            print("seed \(checks.seed)")
            var results = checks.runAll()
            results += try BackendAgreement.trainingStep(reference: CPUBackend(), candidate: gpu, seed: checks.seed)
            for r in results {
                print(String(format: "%@  %-55@ error %.2e  tolerance %.0e", r.passed ? "ok  " : "FAIL", r.name, r.error, r.tolerance))
            }
            let failed = results.filter { !$0.passed }
            print("\(results.count - failed.count)/\(results.count) checks passed")
            if !failed.isEmpty { throw ExitCode(1) }
        }
    }

    /// Medians of repeated runs, timed around a device synchronisation.
    struct Bench: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "bench", abstract: "Time GEMMs and attention on the GPU.")
        @Option(help: "CUDA device index.") var device = 0
        @Option(help: "Timed repetitions per case.") var repeats = 20

        func run() throws {
            let gpu = try CUDABackend(deviceIndex: device)
            print("backend \(gpu.name)")
            func median(_ body: () -> Void) -> Double {
                body()
                gpu.synchronize()
                var times: [Double] = []
                for _ in 0 ..< repeats {
                    let t0 = DispatchTime.now().uptimeNanoseconds
                    body()
                    gpu.synchronize()
                    times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
                }
                return times.sorted()[times.count / 2]
            }
            func random(_ n: Int) -> [Float] { (0 ..< n).map { _ in Float.random(in: -1 ..< 1) } }
            for (n, k, m) in [(4096, 4096, 4096), (8192, 2048, 8192)] {
                let x = gpu.upload(random(n * k), shape: [n, k])
                let w32 = gpu.upload(random(m * k), shape: [m, k]), w16 = gpu.uploadBF16(random(m * k), shape: [m, k])
                let x16 = gpu.uploadBF16(random(n * k), shape: [n, k])
                let y = gpu.zeros([n, m])
                let flops = 2 * Double(n) * Double(k) * Double(m)
                let t32 = median { gpu.linear(x, w32, bias: nil, into: y, accumulate: false) }
                let t16 = median { gpu.linear(x16, w16, bias: nil, into: y, accumulate: false) }
                print(String(format: "linear %dx%dx%d  f32 %.3f ms (%.1f TFLOP/s)  bf16 %.3f ms (%.1f TFLOP/s)",
                             n, k, m, t32 * 1e3, flops / t32 / 1e12, t16 * 1e3, flops / t16 / 1e12))
            }
            for (n, h, kv, d) in [(2048, 32, 8, 64), (4096, 32, 8, 128)] {
                let spec = AttentionSpec(heads: h, kvHeads: kv, headDim: d)
                let q = gpu.upload(random(n * h * d), shape: [n, h * d])
                let k = gpu.upload(random(n * kv * d), shape: [n, kv * d]), v = gpu.upload(random(n * kv * d), shape: [n, kv * d])
                let out = gpu.zeros([n, h * d]), lse = gpu.zeros([h * n])
                let (dq, dk, dv) = (gpu.zeros([n, h * d]), gpu.zeros([n, kv * d]), gpu.zeros([n, kv * d]))
                // Causal: half the score matrix; 2 GEMM-like products forward, 5 backward.
                let flops = 2.0 * 2 * Double(n) * Double(n) / 2 * Double(h * d)
                let tf = median { gpu.attention(q: q, k: k, v: v, out: out, lse: lse, spec: spec) }
                let tb = median { gpu.attentionBackward(dOut: out, q: q, k: k, v: v, out: out, lse: lse, dq: dq, dk: dk, dv: dv, spec: spec) }
                print(String(format: "attention N=%d H=%d KV=%d D=%d  forward %.3f ms (%.1f TFLOP/s)  backward %.3f ms (%.1f TFLOP/s)",
                             n, h, kv, d, tf * 1e3, flops / tf / 1e12, tb * 1e3, 2.5 * flops / tb / 1e12))
            }
        }
    }
}
