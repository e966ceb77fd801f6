import LoftCUDA
import LoftTensors

/// The `device` key of a training config.
public enum ComputeDevice: String, Sendable, Codable, CaseIterable {
    /// The GPU when one is usable (driver, device, NVRTC and cuBLASLt all
    /// present), the CPU otherwise.
    case auto
    case cpu
    case cuda
}

/// The backend a run computes on, and a line for people saying why.
public struct ResolvedDevice {
    public let backend: Backend
    public let note: String

    /// Chosen before any data is read or weights are loaded, so `device:
    /// cuda` on a machine without a usable GPU fails at once, saying why.
    /// `precision` is what the CPU backend's GEMMs round their inputs to. The
    /// CUDA backend does not take it yet: its GEMMs stay f32 (bf16 operands
    /// only for weights stored bf16), while the fp16 loss scaler, which lives
    /// in the trainer, runs on either.
    public static func resolve(_ device: ComputeDevice, precision: ComputePrecision = .fp32) throws -> ResolvedDevice {
        let cpu = precision == .fp32 ? CPUBackend.shared : CPUBackend(computePrecision: precision)
        switch device {
        case .cpu:
            return ResolvedDevice(backend: cpu, note: "device: cpu")
        case .cuda:
            do {
                let b = try CUDABackend()
                return ResolvedDevice(backend: b, note: "device: \(b.name)")
            } catch {
                throw TrainingError("device: cuda, but no usable GPU: \(error); set device: cpu (or auto) to train on the CPU")
            }
        case .auto:
            let probe = CUDAProbe.run()
            guard probe.usable else {
                return ResolvedDevice(backend: cpu, note: "device: cpu (auto: no usable CUDA GPU; `loft info --devices` says why)")
            }
            do {
                let b = try CUDABackend()
                return ResolvedDevice(backend: b, note: "device: \(b.name) (auto)")
            } catch {
                return ResolvedDevice(backend: cpu, note: "device: cpu (auto: the GPU could not be used: \(error))")
            }
        }
    }
}
