/// A frozen weight matrix [rows, cols] kept in a compact form (4-bit or 8-bit
/// blocks, bf16, GGUF blocks) that hands out f32 rows on demand. The linear
/// layers dequantize a tile of rows at a time into scratch memory and run the
/// GEMM on that tile, so the whole f32 matrix never exists.
public protocol FrozenMatrix: AnyObject, Sendable {
    var rows: Int { get }
    var cols: Int { get }
    /// Writes rows `range` as f32 into `dst`, row-major, `cols` apart. Called
    /// from several threads at once for disjoint ranges.
    func dequantizeRows(_ range: Range<Int>, into dst: UnsafeMutablePointer<Float>)
    /// The GGUF blocks behind the weight, when it is stored as such: decoding
    /// multiplies them in place (`QuantizedDecoding`). Nil by default.
    var ggmlBlocks: GGMLBlocks? { get }
}

extension Backend {
    /// Fallback for backends without a tiled path (the CPU backend has one):
    /// the weight dequantized whole on the host, uploaded, and multiplied.
    public func linear(_ x: Tensor, frozen w: FrozenMatrix, bias: Tensor?, into y: Tensor, accumulate: Bool) {
        linear(x, wholeWeight(w), bias: bias, into: y, accumulate: accumulate)
    }

    public func linearBackwardInput(_ dy: Tensor, frozen w: FrozenMatrix, into dx: Tensor, accumulate: Bool) {
        linearBackwardInput(dy, wholeWeight(w), into: dx, accumulate: accumulate)
    }

    private func wholeWeight(_ w: FrozenMatrix) -> Tensor {
        var values = [Float](repeating: 0, count: w.rows * w.cols)
        values.withUnsafeMutableBufferPointer { w.dequantizeRows(0 ..< w.rows, into: $0.baseAddress!) }
        return upload(values, shape: [w.rows, w.cols])
    }
}
