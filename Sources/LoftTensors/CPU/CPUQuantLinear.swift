import CLoftQuant
import Foundation
import LoftFormats

/// A frozen weight's GGUF blocks as the decoding kernels read them: row m of
/// the file starts at `data + m · rowBytes`; output row r reads file row
/// `rowMap[r]` (llama.cpp's q/k permutation undone) or r.
public struct GGMLBlocks {
    public let type: GGMLType
    public let data: UnsafeRawPointer
    public let rowBytes: Int
    public let rowMap: [Int32]?

    public init(type: GGMLType, data: UnsafeRawPointer, rowBytes: Int, rowMap: [Int32]?) {
        self.type = type
        self.data = data
        self.rowBytes = rowBytes
        self.rowMap = rowMap
    }
}

extension FrozenMatrix {
    /// Weights that are not GGUF blocks have none.
    public var ggmlBlocks: GGMLBlocks? { nil }
}

/// y = x · Wᵀ on GGUF blocks for a few rows of x (decoding), without an f32
/// copy of W: `CLoftQuant`'s kernels, spread over the cores by output rows.
public enum QuantizedDecoding {
    /// How the kernels treat x: `int8` rounds each row of x to 8 bits per
    /// block (absmax / 127) and multiplies integers, as llama.cpp does;
    /// `f32` expands each weight row to f32 and multiplies x as it is.
    public enum Mode: String, Sendable, CaseIterable {
        case int8, f32
    }

    /// The mode `linear` uses: `LOFT_QDOT=f32` or `int8` (default), or
    /// `LOFT_QDOT=off` to send every product through the tiled f32 GEMM.
    nonisolated(unsafe) public static var mode: Mode? = {
        switch ProcessInfo.processInfo.environment["LOFT_QDOT"]?.lowercased() {
        case "off", "0", "none": return nil
        case "f32": return .f32
        default: return .int8
        }
    }()

    /// Up to this many rows of x go through the kernels; more (prefill) go
    /// through the tiled dequantize-then-GEMM path, where BLAS wins.
    nonisolated(unsafe) public static var maxRows = 16

    /// Which path a product of GGUF blocks takes on the calling thread.
    /// `automatic` (the default) sends up to `maxRows` rows of x through the
    /// kernels and more through the dequantize-then-GEMM path. The batched
    /// engine routes by row instead (`kernels` for decode rows, `gemm` for
    /// prompt rows) so that a row's numbers never depend on which other
    /// requests share its step: a request gives the same tokens alone or batched.
    public enum Route: Sendable { case automatic, kernels, gemm }

    private static let routeKey: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()

    /// The calling thread's route.
    public static var route: Route {
        switch Int(bitPattern: pthread_getspecific(routeKey)) {
        case 1: return .kernels
        case 2: return .gemm
        default: return .automatic
        }
    }

    /// Runs `body` with `route` on the calling thread (restored after).
    public static func withRoute<T>(_ route: Route, _ body: () throws -> T) rethrows -> T {
        let saved = pthread_getspecific(routeKey)
        let code = route == .kernels ? 1 : route == .gemm ? 2 : 0
        pthread_setspecific(routeKey, UnsafeRawPointer(bitPattern: code))
        defer { pthread_setspecific(routeKey, saved) }
        return try body()
    }

    /// Whether a product with `n` rows of x goes through the kernels (when
    /// the weight's blocks are of a type they multiply and a mode is set).
    public static func usesKernels(rows n: Int) -> Bool {
        guard mode != nil else { return false }
        switch route {
        case .automatic: return n <= maxRows
        case .kernels: return true
        case .gemm: return false
        }
    }

    /// How many products went through the kernels (tests check the routing).
    nonisolated(unsafe) public static var multiplications = 0

    /// "avx2" or "scalar".
    public static var isa: String { String(cString: loft_qdot_isa()) }

    /// Makes the kernels use their scalar loops (tests compare both).
    public static func forceScalar(_ on: Bool) { loft_qdot_force_scalar(on ? 1 : 0) }

    /// Whether the kernels multiply this type (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K).
    public static func supports(_ type: GGMLType) -> Bool { loft_qdot_supported(Int32(type.rawValue)) != 0 }

    /// y[n, rows] (+)= x[n, k] · Wᵀ for rows 0..<rows of `w` (k = x's row length).
    public static func multiply(_ x: UnsafePointer<Float>, rows n: Int, cols k: Int, blocks w: GGMLBlocks, outputs m: Int,
                                into y: UnsafeMutablePointer<Float>, accumulate: Bool, mode: Mode) {
        multiply(x, rows: n, cols: k, products: [Product(blocks: w, outputs: m, y: y, accumulate: accumulate)], mode: mode)
    }

    /// One of the products `multiply(_:rows:cols:products:mode:)` runs
    /// together: y[n, outputs] (+)= x · Wᵀ for the rows of `blocks`.
    public struct Product {
        public let blocks: GGMLBlocks
        public let outputs: Int
        public let y: UnsafeMutablePointer<Float>
        public let accumulate: Bool

        public init(blocks: GGMLBlocks, outputs: Int, y: UnsafeMutablePointer<Float>, accumulate: Bool) {
            self.blocks = blocks; self.outputs = outputs; self.y = y; self.accumulate = accumulate
        }
    }

    /// Several products of the same x (a layer's q, k and v; gate and up) as
    /// one job over the cores: x is rounded to 8 bits once per block layout,
    /// and the cores split the products' output rows together, so two small
    /// products (k and v) do not each leave a core idle. Every output is the
    /// number it gives for its product alone.
    public static func multiply(_ x: UnsafePointer<Float>, rows n: Int, cols k: Int, products: [Product], mode: Mode) {
        guard !products.isEmpty, n > 0 else { return }
        multiplications &+= products.count
        // x rounded once per activation layout (32-element blocks, or the K-quants' 256).
        var rounded: [Int: UnsafeMutableRawPointer] = [:]
        defer { for p in rounded.values { p.deallocate() } }
        var inputs: [UnsafeRawPointer?] = []
        var maps: [UnsafeMutablePointer<Int32>?] = []
        defer { for m in maps { m?.deallocate() } }
        for p in products {
            let type = Int32(p.blocks.type.rawValue)
            if mode == .int8 {
                let layout = p.blocks.type.blockLayout.elements
                if rounded[layout] == nil {
                    let xq = UnsafeMutableRawPointer.allocate(byteCount: max(1, loft_qdot_row_bytes(type, k) * n), alignment: 64)
                    loft_qdot_quantize(type, x, n, k, k, xq)
                    rounded[layout] = xq
                }
                inputs.append(UnsafeRawPointer(rounded[layout]!))
            } else {
                inputs.append(nil)
            }
            maps.append(p.blocks.rowMap.map { map in
                let copy = UnsafeMutablePointer<Int32>.allocate(capacity: map.count)
                copy.initialize(from: map, count: map.count)
                return copy
            })
        }
        var starts = [0]
        for p in products { starts.append(starts.last! + p.outputs) }
        let total = starts.last!
        // One chunk of output rows per core; a chunk should hold enough work
        // to pay for waking a thread (~64 KiB of weights).
        let bytes = products.reduce(0) { $0 + $1.blocks.rowBytes * $1.outputs }
        let minRows = max(1, (64 << 10) / max(1, bytes / max(total, 1)))
        parallelChunks(total, minimumPerChunk: minRows) { range in
            for (i, p) in products.enumerated() {
                let lo = max(range.lowerBound, starts[i]), hi = min(range.upperBound, starts[i + 1])
                guard lo < hi else { continue }
                let type = Int32(p.blocks.type.rawValue), acc: Int32 = p.accumulate ? 1 : 0
                if let xq = inputs[i] {
                    loft_qdot_rows(type, p.blocks.data, p.blocks.rowBytes, maps[i], lo - starts[i], hi - starts[i], k, xq, n,
                                   p.y, p.outputs, acc)
                } else {
                    loft_qdot_rows_f32(type, p.blocks.data, p.blocks.rowBytes, maps[i], lo - starts[i], hi - starts[i], k, x, n, k,
                                       p.y, p.outputs, acc)
                }
            }
        }
    }

    /// Offsets of the f16 scales (d, and dmin or m where the format has one) in a block.
    static func scaleOffsets(_ t: GGMLType) -> [Int] {
        switch t {
        case .q4_1, .q5_1, .q4_K, .q5_K: return [0, 2]
        case .q6_K: return [208]
        default: return [0]
        }
    }

    /// `rows` rows of `cols` elements of random blocks of `type` (every code
    /// byte random, scales drawn as halves of about `scale`): inputs for the
    /// kernels' tests and `loft bench --only decode`.
    public static func sampleBlocks<G: RandomNumberGenerator>(_ type: GGMLType, rows: Int, cols: Int, scale: Float = 0.01,
                                                              using rng: inout G) -> [UInt8] {
        let (elements, bytes) = type.blockLayout
        let blocks = rows * cols / elements
        var out = [UInt8](repeating: 0, count: blocks * bytes)
        out.withUnsafeMutableBytes { raw in
            var i = 0
            while i + 8 <= raw.count { raw.storeBytes(of: rng.next(), toByteOffset: i, as: UInt64.self); i += 8 }
            while i < raw.count { raw[i] = UInt8.random(in: 0 ... 255, using: &rng); i += 1 }
        }
        for b in 0 ..< blocks {
            for off in scaleOffsets(type) {
                let h = Float16(Float.random(in: -2 * scale ... 2 * scale, using: &rng)).bitPattern
                out[b * bytes + off] = UInt8(h & 0xFF)
                out[b * bytes + off + 1] = UInt8(h >> 8)
            }
        }
        return out
    }
}
