import CLoftCUDA
import Foundation

/// Compiles Loft's CUDA C kernels with NVRTC for one GPU architecture and
/// keeps the result on disk (~/.cache/loft/kernels, or LOFT_KERNEL_CACHE),
/// keyed by a hash of the source, the options, the architecture and NVRTC's
/// version, so a changed kernel or a new NVRTC never reuses a stale image.
public final class KernelCompiler: @unchecked Sendable {
    /// A compiled module: a CUBIN for the exact architecture, or PTX that the
    /// driver finishes when NVRTC is older than the GPU.
    public struct Image: Sendable {
        public let module: String
        public let bytes: [UInt8]
        public let isCUBIN: Bool
        public let target: String
        public let fromCache: Bool
    }

    let api: loft_nvrtc
    public let libraryPath: String
    public let version: (major: Int, minor: Int)
    /// The sm_XX numbers this NVRTC can target.
    public let supportedArchs: [Int]
    public var useCache = true

    public init() throws {
        let lib = try CUDALibraries.nvrtc.get()
        api = lib.api
        libraryPath = lib.path
        var major: Int32 = 0, minor: Int32 = 0
        guard api.nvrtcVersion(&major, &minor) == 0 else { throw CUDAError("nvrtcVersion failed in \(lib.path)") }
        version = (Int(major), Int(minor))
        var count: Int32 = 0
        _ = api.nvrtcGetNumSupportedArchs(&count)
        var archs = [Int32](repeating: 0, count: Int(max(count, 0)))
        if count > 0 { _ = api.nvrtcGetSupportedArchs(&archs) }
        supportedArchs = archs.map(Int.init).sorted()
    }

    static let options = ["-default-device"]

    public static var cacheDirectory: URL {
        let env = ProcessInfo.processInfo.environment
        if let dir = env["LOFT_KERNEL_CACHE"], !dir.isEmpty { return URL(fileURLWithPath: dir) }
        if let xdg = env["XDG_CACHE_HOME"], !xdg.isEmpty { return URL(fileURLWithPath: xdg).appendingPathComponent("loft/kernels") }
        return FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/loft/kernels")
    }

    /// What NVRTC is asked for, given the device's sm number: the exact
    /// architecture as a CUBIN when NVRTC knows it, else PTX for the newest it
    /// knows (the driver compiles that for the newer GPU).
    func target(forArch arch: Int) throws -> (option: String, cubin: Bool, name: String) {
        guard let oldest = supportedArchs.first, let newest = supportedArchs.last else {
            return ("--gpu-architecture=compute_\(arch)", false, "compute_\(arch)")
        }
        if arch < oldest {
            throw CUDAError("NVRTC \(version.major).\(version.minor) cannot compile for sm_\(arch) (its oldest target is sm_\(oldest)); use the NVRTC of an older CUDA (set LOFT_CUDA_LIBS to its folder)")
        }
        if supportedArchs.contains(arch) && api.nvrtcGetCUBIN != nil {
            return ("--gpu-architecture=sm_\(arch)", true, "sm_\(arch)")
        }
        let ptxArch = supportedArchs.last { $0 <= arch } ?? newest
        return ("--gpu-architecture=compute_\(ptxArch)", false, "compute_\(ptxArch)")
    }

    /// Compiles (or reads from the cache) one module for sm_`arch`. A compile
    /// error throws with NVRTC's log.
    public func compile(_ module: KernelSources.Module, arch: Int) throws -> Image {
        let t = try target(forArch: arch)
        let opts = [t.option] + Self.options
        let key = Self.hash([module.source, opts.joined(separator: " "), "nvrtc \(version.major).\(version.minor)"])
        let file = Self.cacheDirectory.appendingPathComponent("\(module.name)-\(t.name)-\(String(key, radix: 16)).\(t.cubin ? "cubin" : "ptx")")
        if useCache, let data = try? Data(contentsOf: file), !data.isEmpty {
            return Image(module: module.name, bytes: [UInt8](data), isCUBIN: t.cubin, target: t.name, fromCache: true)
        }
        var program: loft_nvrtc_program?
        try check(api.nvrtcCreateProgram(&program, module.source, module.name + ".cu", 0, nil, nil), "nvrtcCreateProgram(\(module.name))")
        defer { _ = api.nvrtcDestroyProgram(&program) }
        let cOptions = opts.map { strdup($0) }
        defer { cOptions.forEach { free($0) } }
        var optionPointers = cOptions.map { UnsafePointer<CChar>($0) }
        let status = optionPointers.withUnsafeMutableBufferPointer { buffer in
            api.nvrtcCompileProgram(program, Int32(buffer.count), buffer.baseAddress)
        }
        if status != 0 {
            var logSize = 0
            _ = api.nvrtcGetProgramLogSize(program, &logSize)
            var log = [CChar](repeating: 0, count: max(logSize, 1))
            _ = api.nvrtcGetProgramLog(program, &log)
            throw CUDAError("kernel module \(module.name) does not compile for \(t.name) with NVRTC \(version.major).\(version.minor) (\(describe(status))):\n\(String(cString: log))")
        }
        var bytes: [UInt8]
        var size = 0
        if t.cubin, let getSize = api.nvrtcGetCUBINSize, let get = api.nvrtcGetCUBIN {
            try check(getSize(program, &size), "nvrtcGetCUBINSize")
            bytes = [UInt8](repeating: 0, count: size)
            try bytes.withUnsafeMutableBytes { p in try check(get(program, p.baseAddress!.assumingMemoryBound(to: CChar.self)), "nvrtcGetCUBIN") }
        } else {
            try check(api.nvrtcGetPTXSize(program, &size), "nvrtcGetPTXSize")
            bytes = [UInt8](repeating: 0, count: size)
            try bytes.withUnsafeMutableBytes { p in try check(api.nvrtcGetPTX(program, p.baseAddress!.assumingMemoryBound(to: CChar.self)), "nvrtcGetPTX") }
        }
        if useCache {
            // Written to a temporary name and renamed, so a concurrent reader
            // never sees half a file; a cache that cannot be written is skipped.
            let fm = FileManager.default
            try? fm.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
            let temp = file.appendingPathExtension("tmp\(getpid())")
            if (try? Data(bytes).write(to: temp)) != nil {
                if rename(temp.path, file.path) != 0 { try? fm.removeItem(at: temp) }
            }
        }
        return Image(module: module.name, bytes: bytes, isCUBIN: t.cubin, target: t.name, fromCache: false)
    }

    func describe(_ status: loft_nvrtc_result) -> String {
        api.nvrtcGetErrorString(status).map { String(cString: $0) } ?? "NVRTC error \(status)"
    }

    func check(_ status: loft_nvrtc_result, _ what: String) throws {
        if status != 0 { throw CUDAError("\(what) failed: \(describe(status))") }
    }

    /// FNV-1a over the parts (with their lengths, so parts cannot run into
    /// each other): a cache key, not a security measure.
    static func hash(_ parts: [String]) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ byte: UInt8) { h = (h ^ UInt64(byte)) &* 0x100_0000_01b3 }
        for part in parts {
            for byte in part.utf8 { mix(byte) }
            var n = UInt64(part.utf8.count)
            for _ in 0 ..< 8 { mix(UInt8(truncatingIfNeeded: n)); n >>= 8 }
        }
        return h
    }
}
