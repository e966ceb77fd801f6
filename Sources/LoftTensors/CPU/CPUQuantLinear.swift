import CLoftKernels
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
        /// Adapters' second halves added to rows of y as each piece of
        /// output rows is computed (`LowRankUp`).
        public let ups: [LowRankUp]

        public init(blocks: GGMLBlocks, outputs: Int, y: UnsafeMutablePointer<Float>, accumulate: Bool, ups: [LowRankUp] = []) {
            self.blocks = blocks; self.outputs = outputs; self.y = y; self.accumulate = accumulate; self.ups = ups
        }
    }

    /// y[row] += B · t[row - first] for rows first..<first+count of a
    /// product: a LoRA's B (`packed`) applied to its t = scale·A·x computed
    /// before. Each output is `loft_lora_up`'s number for that row alone,
    /// whatever the piece of output rows it falls in.
    public struct LowRankUp {
        public let first: Int, count: Int
        public let t: UnsafePointer<Float>
        // Raw pointers (the caller keeps the `PackedLoRA` alive): read for
        // every row of every piece, where a class reference costs a retain.
        let rank: Int
        let packed: UnsafePointer<Float>?, packedHalf: UnsafePointer<UInt16>?

        public init(first: Int, count: Int, t: UnsafePointer<Float>, packed: PackedLoRA) {
            self.first = first; self.count = count; self.t = t
            rank = packed.rank
            if packed.half { (self.packed, packedHalf) = (nil, UnsafePointer(packed.b.assumingMemoryBound(to: UInt16.self))) }
            else { (self.packed, packedHalf) = (UnsafePointer(packed.b.assumingMemoryBound(to: Float.self)), nil) }
        }

        /// The packed bytes of B that outputs `outputs` read.
        func packedBytes(_ outputs: Range<Int>) -> (UnsafeRawPointer, Int) {
            let (first, last) = (outputs.lowerBound / 16, (outputs.upperBound + 15) / 16)
            let base = packed.map { UnsafeRawPointer($0) } ?? UnsafeRawPointer(packedHalf!)
            let size = packed == nil ? 2 : 4
            return (base + first * 16 * rank * size, (last - first) * 16 * rank * size)
        }

        /// Row `first + j`'s outputs from ..< from + count (y: the product's output rows).
        @inline(__always)
        func add(row j: Int, from: Int, count: Int, outputs: Int, y: UnsafeMutablePointer<Float>) {
            let (tr, yr) = (t + j * rank, y + (first + j) * outputs)
            if let b = packed { loft_lora_up(tr, rank, b, from, count, yr) } else { loft_lora_up_f16(tr, rank, packedHalf!, from, count, yr) }
        }
    }

    /// Pieces of output rows per core in a job with adapters.
    nonisolated(unsafe) static var piecesPerCore = 4

    /// Several products of the same x (a layer's q, k and v; gate and up) as
    /// one job over the cores: x is rounded to 8 bits once per block layout,
    /// and the cores split the products' output rows together, so two small
    /// products (k and v) do not each leave a core idle. Every output is the
    /// number it gives for its product alone.
    ///
    /// `prelude` (`preludeCount` pieces) is work the products' `ups` need
    /// first, their t = scale·A·x: each piece of output rows computes its
    /// own rows while it prefetches what its adapters will read
    /// (`preludeRegions`, A, in shares, and its rows of each packed B), then
    /// claims pieces of the prelude, waits until all of it is done and adds
    /// its rows of B·t. So the adapters ride in the products' job on every
    /// core; a piece only ever waits for prelude pieces another has begun.
    public static func multiply(_ x: UnsafePointer<Float>, rows n: Int, cols k: Int, products: [Product], mode: Mode,
                                preludeCount: Int = 0, prelude: (Int) -> Void = { _ in },
                                preludeRegions: [(UnsafeRawPointer, Int)] = []) {
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
        // [next prelude piece to claim, prelude pieces done]
        let counters = UnsafeMutablePointer<Int>.allocate(capacity: 2)
        counters.initialize(repeating: 0, count: 2)
        defer { counters.deallocate() }
        // More pieces than cores when adapters ride along: they are claimed as
        // the cores come free, so whoever ran more of the prelude does fewer.
        let pieces = min(CPUBackend.threads * (preludeCount > 0 ? piecesPerCore : 1), max(1, total / minRows))
        let regionCapacity = preludeCount > 0 ? products.reduce(preludeRegions.count) { $0 + $1.ups.count } : 0
        func piece(_ c: Int, _ range: Range<Int>) {
            withUnsafeTemporaryAllocation(of: UnsafeRawPointer?.self, capacity: regionCapacity) { regions in
                withUnsafeTemporaryAllocation(of: Int.self, capacity: regionCapacity) { sizes in
                    piece(c, range, regions: regions.baseAddress, sizes: sizes.baseAddress)
                }
            }
        }
        func piece(_ c: Int, _ range: Range<Int>, regions: UnsafeMutablePointer<UnsafeRawPointer?>?, sizes: UnsafeMutablePointer<Int>?) {
            // What this piece's adapters will read (its rows of each packed B,
            // its share of the prelude's A), fetched while its base rows compute.
            var count = 0
            if preludeCount > 0, let regions, let sizes {
                for (i, p) in products.enumerated() {
                    let lo = max(range.lowerBound, starts[i]), hi = min(range.upperBound, starts[i + 1])
                    guard lo < hi else { continue }
                    for u in p.ups {
                        (regions[count], sizes[count]) = u.packedBytes(lo - starts[i] ..< hi - starts[i])
                        count += 1
                    }
                }
                for (start, bytes) in preludeRegions {
                    let (a, b) = (bytes * c / pieces / 64 * 64, bytes * (c + 1) / pieces / 64 * 64)
                    if a < b { (regions[count], sizes[count]) = (start + a, b - a); count += 1 }
                }
            }
            for (i, p) in products.enumerated() {
                let lo = max(range.lowerBound, starts[i]), hi = min(range.upperBound, starts[i + 1])
                guard lo < hi else { continue }
                let type = Int32(p.blocks.type.rawValue), acc: Int32 = p.accumulate ? 1 : 0
                if let xq = inputs[i] {
                    // the side regions ride with the first product this piece computes
                    loft_qdot_rows_side(type, p.blocks.data, p.blocks.rowBytes, maps[i], lo - starts[i], hi - starts[i], k, xq, n,
                                        p.y, p.outputs, acc, regions, sizes, Int32(count))
                    count = 0
                } else {
                    loft_qdot_rows_f32(type, p.blocks.data, p.blocks.rowBytes, maps[i], lo - starts[i], hi - starts[i], k, x, n, k,
                                       p.y, p.outputs, acc)
                }
            }
            while true {
                let piece = loft_counter_add(counters, 1)
                if piece >= preludeCount { break }
                prelude(piece)
                loft_counter_add(counters + 1, 1)
            }
            loft_counter_wait(counters + 1, preludeCount)
            for (i, p) in products.enumerated() {
                let lo = max(range.lowerBound, starts[i]), hi = min(range.upperBound, starts[i + 1])
                guard lo < hi else { continue }
                let (from, count) = (lo - starts[i], hi - lo)
                for u in p.ups {
                    for j in 0 ..< u.count { u.add(row: j, from: from, count: count, outputs: p.outputs, y: p.y) }
                }
            }
        }
        if pieces <= 1 || CPUBackend.threads < 2 {
            piece(0, 0 ..< total)
        } else {
            teamRun(pieces, threads: CPUBackend.threads) { c in piece(c, total * c / pieces ..< total * (c + 1) / pieces) }
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
