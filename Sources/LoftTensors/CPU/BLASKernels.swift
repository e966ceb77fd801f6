import Foundation

/// Debian's OpenBLAS picks its kernels when the library loads, and on CPUs
/// newer than its tables (this Xeon reads as "Cooperlake") it falls back to
/// SSE3 ("Prescott") GEMM kernels: 4–5× slower than the AVX-512 ones. The
/// choice can only be made through OPENBLAS_CORETYPE before the library
/// loads, so a program sets it and re-executes itself once.
public enum BLASKernels {
    /// The OPENBLAS_CORETYPE this CPU should use, from /proc/cpuinfo's flags.
    public static func preferredCoreType() -> String? {
        #if os(Linux)
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let flagsLine = info.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return nil }
        let flags = Set(flagsLine.split(separator: " ").map(String.init))
        if flags.contains("avx512f") && flags.contains("avx512bw") && flags.contains("avx512vl") { return "SkylakeX" }
        if flags.contains("avx2") && flags.contains("fma") { return "Haswell" }
        #endif
        return nil
    }

    /// Call first thing in `main`: unless OPENBLAS_CORETYPE is already set,
    /// sets it for this CPU and re-executes the program with the same
    /// arguments (returns only when nothing needs to change or exec fails).
    public static func reexecWithFastKernelsIfNeeded() {
        #if os(Linux)
        guard ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] == nil,
              let core = preferredCoreType() else { return }
        setenv("OPENBLAS_CORETYPE", core, 1)
        let args = CommandLine.arguments
        var cargs: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) }
        cargs.append(nil)
        execv("/proc/self/exe", &cargs)
        // exec failed: carry on with whatever kernels were chosen.
        for p in cargs { free(p) }
        #endif
    }
}
