import CLoftCUDA
import Foundation

/// What went wrong with CUDA, said so that a person knows what to do next.
public struct CUDAError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The three NVIDIA libraries, each opened once per process on first use.
/// A machine without them gets a `CUDAError` naming the missing library and
/// the fix; nothing here crashes.
enum CUDALibraries {
    struct Driver { let api: loft_cuda_driver; let path: String }
    struct NVRTC { let api: loft_nvrtc; let path: String }
    struct CublasLt { let api: loft_cublaslt; let path: String }

    static let driver: Result<Driver, CUDAError> = {
        var api = loft_cuda_driver()
        let (ok, path, error) = open { loft_cuda_load_driver(&api, $0, $1, $2, $3) }
        return ok ? .success(Driver(api: api, path: path)) : .failure(CUDAError(error))
    }()

    static let nvrtc: Result<NVRTC, CUDAError> = {
        var api = loft_nvrtc()
        let (ok, path, error) = open { loft_cuda_load_nvrtc(&api, $0, $1, $2, $3) }
        return ok ? .success(NVRTC(api: api, path: path)) : .failure(CUDAError(error))
    }()

    static let cublasLt: Result<CublasLt, CUDAError> = {
        var api = loft_cublaslt()
        let (ok, path, error) = open { loft_cuda_load_cublaslt(&api, $0, $1, $2, $3) }
        return ok ? .success(CublasLt(api: api, path: path)) : .failure(CUDAError(error))
    }()

    private static func open(_ load: (UnsafeMutablePointer<CChar>, Int, UnsafeMutablePointer<CChar>, Int) -> Int32)
        -> (Bool, String, String) {
        var path = [CChar](repeating: 0, count: 4096)
        var error = [CChar](repeating: 0, count: 4096)
        let status = path.withUnsafeMutableBufferPointer { p in
            error.withUnsafeMutableBufferPointer { e in load(p.baseAddress!, p.count, e.baseAddress!, e.count) }
        }
        return (status == 0, String(cString: path), String(cString: error))
    }
}

extension loft_cuda_driver {
    /// The driver's name and text for an error code.
    func describe(_ result: loft_cu_result) -> String {
        var name: UnsafePointer<CChar>?
        var text: UnsafePointer<CChar>?
        _ = cuGetErrorName(result, &name)
        _ = cuGetErrorString(result, &text)
        return "\(name.map { String(cString: $0) } ?? "CUDA error \(result)"): \(text.map { String(cString: $0) } ?? "no description")"
    }

    func check(_ result: loft_cu_result, _ what: @autoclosure () -> String) throws {
        if result != 0 { throw CUDAError("\(what()) failed: \(describe(result))") }
    }
}

/// One CUDA device as `loft info --devices` shows it.
public struct CUDADeviceInfo: Sendable, Equatable {
    public let index: Int
    public let name: String
    public let computeCapability: (major: Int, minor: Int)
    public let totalMemory: Int
    public let multiprocessors: Int

    /// "sm_90" for compute capability 9.0.
    public var arch: Int { computeCapability.major * 10 + computeCapability.minor }

    public static func == (a: CUDADeviceInfo, b: CUDADeviceInfo) -> Bool {
        a.index == b.index && a.name == b.name && a.arch == b.arch && a.totalMemory == b.totalMemory
    }
}

/// What this machine offers for CUDA: the devices, or why there are none.
public struct CUDAProbe: Sendable {
    /// The oldest driver Loft accepts (CUDA 12.0): its NVRTC output and
    /// cuBLASLt need it.
    public static let minimumDriverVersion = 12000

    public var driverPath: String?
    /// The CUDA version the driver supports, e.g. 12080 for 12.8.
    public var driverVersion: Int?
    public var devices: [CUDADeviceInfo] = []
    public var nvrtcPath: String?
    public var nvrtcVersion: (major: Int, minor: Int)?
    public var cublasLtPath: String?
    /// Why no device can be used, with what to do; nil when one can.
    public var problem: String?
    /// Problems with the libraries beside the driver (NVRTC, cuBLASLt).
    public var libraryProblems: [String] = []

    /// Looks, without failing: every outcome is a report.
    public static func run() -> CUDAProbe {
        var probe = CUDAProbe()
        switch CUDALibraries.nvrtc {
        case .success(let n):
            probe.nvrtcPath = n.path
            var major: Int32 = 0, minor: Int32 = 0
            if n.api.nvrtcVersion(&major, &minor) == 0 { probe.nvrtcVersion = (Int(major), Int(minor)) }
        case .failure(let e): probe.libraryProblems.append(e.description)
        }
        switch CUDALibraries.cublasLt {
        case .success(let c): probe.cublasLtPath = c.path
        case .failure(let e): probe.libraryProblems.append(e.description)
        }
        let driver: CUDALibraries.Driver
        switch CUDALibraries.driver {
        case .success(let d): driver = d
        case .failure(let e):
            probe.problem = e.description
            return probe
        }
        probe.driverPath = driver.path
        let api = driver.api
        var version: Int32 = 0
        if api.cuDriverGetVersion(&version) == 0 { probe.driverVersion = Int(version) }
        let initResult = api.cuInit(0)
        if initResult == Int32(LOFT_CUDA_ERROR_NO_DEVICE) {
            probe.problem = "the NVIDIA driver is installed but sees no CUDA device (\(api.describe(initResult))); check `nvidia-smi`, and that this container or VM was given the GPU"
            return probe
        }
        if initResult == Int32(LOFT_CUDA_ERROR_INSUFFICIENT_DRIVER) {
            probe.problem = "the NVIDIA driver is too old for this CUDA (\(api.describe(initResult))); update the driver"
            return probe
        }
        if initResult != 0 {
            probe.problem = "the NVIDIA driver did not start (\(api.describe(initResult))); check `nvidia-smi` and the driver's installation"
            return probe
        }
        if let v = probe.driverVersion, v < minimumDriverVersion {
            probe.problem = "the NVIDIA driver supports CUDA \(v / 1000).\(v % 1000 / 10), Loft needs CUDA 12.0 or newer; update the NVIDIA driver"
        }
        var count: Int32 = 0
        if api.cuDeviceGetCount(&count) != 0 || count == 0 {
            probe.problem = probe.problem ?? "the NVIDIA driver reports no CUDA device; check `nvidia-smi`"
            return probe
        }
        for i in 0 ..< Int(count) {
            var device: loft_cu_device = 0
            guard api.cuDeviceGet(&device, Int32(i)) == 0 else { continue }
            var name = [CChar](repeating: 0, count: 256)
            _ = api.cuDeviceGetName(&name, Int32(name.count), device)
            var major: Int32 = 0, minor: Int32 = 0, sms: Int32 = 0
            _ = api.cuDeviceGetAttribute(&major, Int32(LOFT_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR), device)
            _ = api.cuDeviceGetAttribute(&minor, Int32(LOFT_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR), device)
            _ = api.cuDeviceGetAttribute(&sms, Int32(LOFT_CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT), device)
            var bytes = 0
            _ = api.cuDeviceTotalMem(&bytes, device)
            probe.devices.append(CUDADeviceInfo(index: i, name: String(cString: name), computeCapability: (Int(major), Int(minor)),
                                                totalMemory: bytes, multiprocessors: Int(sms)))
        }
        if probe.problem == nil, let first = probe.libraryProblems.first { probe.problem = first }
        return probe
    }

    /// True when a CUDABackend can be made here.
    public var usable: Bool { problem == nil && !devices.isEmpty }

    /// "12.8" for 12080.
    public static func versionString(_ v: Int) -> String { "\(v / 1000).\(v % 1000 / 10)" }
}
