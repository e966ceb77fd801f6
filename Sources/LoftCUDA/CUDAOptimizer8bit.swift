import Foundation
import LoftTensors

extension CUDABackend: BackendOptimizer8bit {
    /// 8-bit AdamW's moments (`BlockwiseQuantizedVector`) live in host memory,
    /// so the step runs there: the parameter and its gradient come down, the
    /// CPU kernel updates them, the parameter goes back. LoRA parameters are
    /// small, so this costs little; a device kernel is left for a session
    /// with a GPU to check it on.
    public func adamW8bit(param: Tensor, grad: Tensor, m: BlockwiseQuantizedVector, v: BlockwiseQuantizedVector,
                          hyper: AdamWHyper) {
        let cpu = CPUBackend.shared
        let hostParam = cpu.upload(download(param), shape: param.shape)
        let hostGrad = cpu.upload(download(grad), shape: grad.shape)
        cpu.adamW8bit(param: hostParam, grad: hostGrad, m: m, v: v, hyper: hyper)
        copy(hostParam, into: param)
    }
}
