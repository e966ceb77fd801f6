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
}
