import CLoftGEMM
import CLoftKernels
import Foundation

/// Which GEMM kernel a reduced-precision product uses on this CPU, decided
/// once per CPU model by measuring it.
///
/// bf16 products can run on Loft's AVX512-BF16 kernel (`CPUGEMM.bf16`) or be
/// rounded and handed to sgemm. Which is faster depends on the core, not on
/// the shape: vdpbf16ps retires at an fp32 FMA's rate on AMD Zen 4 (twice the
/// flops) and at half of it on Intel Emerald Rapids (the same flops as
/// sgemm's FMAs, with packing on top). So the choice is a ~50 ms register-only
/// loop of each instruction (`loft_gemm_bf16_flops_ratio`): the kernel where
/// vdpbf16ps delivers at least 1.3× the FMA's flops. The ratio is a factor of
/// four apart on the two CPUs, so noise does not flip it, and every process
/// on one machine makes the same choice (results stay reproducible run to
/// run). It is kept in ~/.cache/loft/cpu-kernels.json by CPU model;
/// `LOFT_BF16_GEMM=kernel` or `=sgemm` decides instead.
public enum CPUKernelChoice {
    public struct Decision: Sendable, Equatable {
        /// bf16 GEMMs go to the AVX512-BF16 kernel.
        public let bf16Kernel: Bool
        /// vdpbf16ps flops per fp32 FMA flop on this core (nil when not measured).
        public let bf16FlopsRatio: Double?
        /// Why, in words (for `loft bench` and `loft info`).
        public let reason: String
    }

    /// The ratio from which the kernel is used.
    public static let threshold = 1.3

    public static let bf16: Decision = decide(environment: ProcessInfo.processInfo.environment)

    static func decide(environment: [String: String]) -> Decision {
        if let forced = environment["LOFT_BF16_GEMM"] {
            let kernel = forced == "kernel" && CPUGEMM.bf16KernelAvailable
            return Decision(bf16Kernel: kernel, bf16FlopsRatio: nil,
                            reason: "LOFT_BF16_GEMM=\(forced)" + (forced == "kernel" && !kernel ? " (this CPU has no AVX512-BF16)" : ""))
        }
        guard CPUGEMM.bf16KernelAvailable else {
            return Decision(bf16Kernel: false, bf16FlopsRatio: nil, reason: "no AVX512-BF16 on this CPU: rounded inputs, sgemm")
        }
        let key = cpuModel()
        let file = cacheFile(environment: environment)
        var cache = (try? JSONSerialization.jsonObject(with: Data(contentsOf: file))) as? [String: Double] ?? [:]
        let ratio: Double
        if let cached = cache[key] {
            ratio = cached
        } else {
            ratio = measureBF16Ratio()
            cache[key] = ratio
            try? FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
            if let data = try? JSONSerialization.data(withJSONObject: cache, options: [.prettyPrinted, .sortedKeys]) {
                try? data.write(to: file, options: .atomic)
            }
        }
        let kernel = ratio >= threshold
        return Decision(bf16Kernel: kernel, bf16FlopsRatio: ratio,
                        reason: String(format: "vdpbf16ps delivers %.2fx the flops of an fp32 FMA on this core: %@", ratio,
                                       kernel ? "the AVX512-BF16 kernel" : "rounded inputs, sgemm"))
    }

    /// vdpbf16ps flops per fp32 FMA flop on this core, measured now (about
    /// 50 ms; 0 without AVX512-BF16).
    public static func measureBF16Ratio() -> Double { loft_gemm_bf16_flops_ratio(2_000_000) }

    /// The instruction set of the elementwise kernels in use (CLoftKernels).
    public static var elementwiseISA: String {
        switch loft_kernels_level() {
        case 2: return "AVX-512"
        case 1: return "AVX2+FMA"
        default: return "portable (no AVX2)"
        }
    }

    static func cacheFile(environment env: [String: String]) -> URL {
        let base = env["XDG_CACHE_HOME"].map { URL(fileURLWithPath: $0) }
            ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache")
        return base.appendingPathComponent("loft/cpu-kernels.json")
    }

    /// "model name | family/model/stepping" from /proc/cpuinfo (one entry per core type).
    public static func cpuModel() -> String {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return "unknown" }
        var fields: [String: String] = [:]
        for line in text.split(separator: "\n") {
            if line.isEmpty { break }
            let parts = line.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if parts.count == 2 { fields[parts[0]] = parts[1] }
        }
        return "\(fields["model name"] ?? "unknown") | family \(fields["cpu family"] ?? "?") model \(fields["model"] ?? "?") stepping \(fields["stepping"] ?? "?")"
    }
}
