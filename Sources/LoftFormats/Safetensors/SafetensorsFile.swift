import Foundation

/// safetensors element types, spelled as the header spells them.
public enum SafetensorsDType: String, CaseIterable, Sendable, CustomStringConvertible {
    case f64 = "F64", f32 = "F32", f16 = "F16", bf16 = "BF16"
    case i64 = "I64", i32 = "I32", i16 = "I16", i8 = "I8"
    case u64 = "U64", u32 = "U32", u16 = "U16", u8 = "U8"
    case bool = "BOOL"
    case f8_e4m3 = "F8_E4M3", f8_e5m2 = "F8_E5M2", f8_e8m0 = "F8_E8M0"

    public var description: String { rawValue }

    public var byteSize: Int {
        switch self {
        case .f64, .i64, .u64: return 8
        case .f32, .i32, .u32: return 4
        case .f16, .bf16, .i16, .u16: return 2
        case .i8, .u8, .bool, .f8_e4m3, .f8_e5m2, .f8_e8m0: return 1
        }
    }

    public var isFloatingPoint: Bool {
        switch self {
        case .f64, .f32, .f16, .bf16, .f8_e4m3, .f8_e5m2, .f8_e8m0: return true
        default: return false
        }
    }

    /// The rank the reference writer sorts by (its `Dtype` enum order); tensors
    /// are written with the highest rank first, then by name.
    var writeRank: Int {
        switch self {
        case .bool: return 0
        case .u8: return 1
        case .i8: return 2
        case .f8_e5m2: return 3
        case .f8_e4m3: return 4
        case .f8_e8m0: return 5
        case .i16: return 6
        case .u16: return 7
        case .f16: return 8
        case .bf16: return 9
        case .i32: return 10
        case .u32: return 11
        case .f32: return 12
        case .f64: return 13
        case .i64: return 14
        case .u64: return 15
        }
    }

    static var supportedList: String { allCases.map(\.rawValue).joined(separator: ", ") }

    /// Converts `count` elements at `src` (any alignment) to float32: floats are
    /// widened exactly (F64 is rounded to nearest), integers rounded to nearest,
    /// BOOL gives 0 or 1.
    public func toFloats(_ src: UnsafeRawPointer, count: Int, into dst: UnsafeMutablePointer<Float>) {
        func load<T: FixedWidthInteger>(_ t: T.Type, _ i: Int) -> T {
            T(littleEndian: src.loadUnaligned(fromByteOffset: i * MemoryLayout<T>.size, as: T.self))
        }
        switch self {
        case .f32: UnsafeMutableRawPointer(dst).copyMemory(from: src, byteCount: 4 * count)
        case .f64: for i in 0 ..< count { dst[i] = Float(Double(bitPattern: load(UInt64.self, i))) }
        case .f16: for i in 0 ..< count { dst[i] = GGMLDequantizer.halfBitsToFloat(load(UInt16.self, i)) }
        case .bf16: for i in 0 ..< count { dst[i] = Float(bitPattern: UInt32(load(UInt16.self, i)) << 16) }
        case .i64: for i in 0 ..< count { dst[i] = Float(load(Int64.self, i)) }
        case .i32: for i in 0 ..< count { dst[i] = Float(load(Int32.self, i)) }
        case .i16: for i in 0 ..< count { dst[i] = Float(load(Int16.self, i)) }
        case .i8: for i in 0 ..< count { dst[i] = Float(load(Int8.self, i)) }
        case .u64: for i in 0 ..< count { dst[i] = Float(load(UInt64.self, i)) }
        case .u32: for i in 0 ..< count { dst[i] = Float(load(UInt32.self, i)) }
        case .u16: for i in 0 ..< count { dst[i] = Float(load(UInt16.self, i)) }
        case .u8: for i in 0 ..< count { dst[i] = Float(load(UInt8.self, i)) }
        case .bool: for i in 0 ..< count { dst[i] = load(UInt8.self, i) != 0 ? 1 : 0 }
        case .f8_e5m2:
            // E5M2 is the top byte of an IEEE half.
            for i in 0 ..< count { dst[i] = GGMLDequantizer.halfBitsToFloat(UInt16(load(UInt8.self, i)) << 8) }
        case .f8_e4m3:
            for i in 0 ..< count { dst[i] = Self.e4m3fn(load(UInt8.self, i)) }
        case .f8_e8m0:
            for i in 0 ..< count {
                let e = load(UInt8.self, i)
                dst[i] = e == 0xFF ? .nan : Float(sign: .plus, exponent: Int(e) - 127, significand: 1)
            }
        }
    }

    /// OCP FP8 E4M3 "fn": bias 7, subnormals, no infinities, S.1111.111 is NaN.
    @inline(__always)
    static func e4m3fn(_ b: UInt8) -> Float {
        let sign: UInt32 = UInt32(b & 0x80) << 24
        let e = Int((b >> 3) & 0x0F), m = UInt32(b & 7)
        if e == 15 && m == 7 { return Float(bitPattern: sign | 0x7FC0_0000) }
        if e == 0 {
            let v = Float(m) * 0x1p-9
            return sign != 0 ? -v : v
        }
        return Float(bitPattern: sign | UInt32(e - 7 + 127) << 23 | m << 20)
    }
}

/// One tensor's entry in a safetensors header.
public struct SafetensorsTensorInfo: Sendable, Equatable {
    public let name: String
    public let dtype: SafetensorsDType
    /// Row-major shape, outermost first; `[]` for a scalar.
    public let shape: [Int]
    /// `data_offsets` as the header gives them, relative to the end of the header.
    public let dataOffsets: Range<Int>
    /// Byte offset of the data from the start of the file.
    public let offset: Int

    public var byteCount: Int { dataOffsets.count }
    public var elementCount: Int { shape.reduce(1, *) }
}

/// A tensor's entry and its bytes, in place in the memory map.
public struct SafetensorsTensor {
    public let info: SafetensorsTensorInfo
    public let bytes: UnsafeRawBufferPointer
    /// Keeps the mapping alive as long as the bytes are used.
    let owner: AnyObject

    public var name: String { info.name }
    public var dtype: SafetensorsDType { info.dtype }
    public var shape: [Int] { info.shape }
    public var elementCount: Int { info.elementCount }

    /// The values as float32, converted from any dtype (see `SafetensorsDType.toFloats`).
    public func floats() -> [Float] {
        let n = info.elementCount
        return [Float](unsafeUninitializedCapacity: n) { buf, initialized in
            if n > 0 { info.dtype.toFloats(bytes.baseAddress!, count: n, into: buf.baseAddress!) }
            initialized = n
        }
    }

    /// Elements `range` (flat, row-major) as float32 into `dst`, which must have
    /// room for `range.count` floats: for converting a large tensor tile by tile.
    public func floats(_ range: Range<Int>, into dst: UnsafeMutablePointer<Float>) throws {
        guard range.lowerBound >= 0, range.upperBound <= info.elementCount else {
            throw FormatError(info.name, "elements \(range) are out of range (the tensor has \(info.elementCount))")
        }
        guard !range.isEmpty else { return }
        info.dtype.toFloats(bytes.baseAddress! + range.lowerBound * info.dtype.byteSize, count: range.count, into: dst)
    }
}

/// A memory-mapped .safetensors file. The header is checked the way the reference
/// reader checks it (every tensor's span matches its shape and dtype, the spans
/// tile the data section with no gap or overlap), so a bad file fails on open.
public final class SafetensorsFile: @unchecked Sendable {
    public let path: String
    /// `__metadata__`: free-form string pairs (e.g. "format": "pt").
    public let metadata: [String: String]
    /// Tensors in data order.
    public let tensors: [SafetensorsTensorInfo]
    /// Length of the JSON header in bytes (the 8-byte length prefix not included).
    public let headerLength: Int
    let file: MappedFile
    private let index: [String: Int]

    /// The reference refuses headers above 100 MB.
    public static let maxHeaderLength = 100_000_000

    public init(path: String) throws {
        file = try MappedFile(path: path)
        self.path = path
        let bytes = file.bytes
        guard bytes.count >= 8 else {
            throw FormatError(path, "truncated: \(bytes.count) bytes, but a safetensors file starts with an 8-byte header length; re-download or re-save it")
        }
        let n64 = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
        guard n64 <= UInt64(bytes.count - 8) else {
            throw FormatError(path, "header length \(n64) is larger than the file (\(bytes.count) bytes): the file is truncated or not a safetensors file")
        }
        guard n64 <= UInt64(Self.maxHeaderLength) else {
            throw FormatError(path, "header length \(n64) exceeds the \(Self.maxHeaderLength)-byte limit of the safetensors format; the file is corrupt")
        }
        let n = Int(n64)
        headerLength = n
        let header = UnsafeRawBufferPointer(rebasing: bytes[8 ..< 8 + n])
        guard n > 0, header[0] == UInt8(ascii: "{") else {
            throw FormatError(path, "header does not start with '{': not a safetensors file, or the header length is wrong")
        }
        let json: JSONValue
        do { json = try JSONParser.parse(header) } catch let e as JSONParser.Error {
            throw FormatError(path, "malformed header JSON: \(e.message) at byte \(e.offset + 8) of the file")
        }
        guard let root = json.object else { throw FormatError(path, "header JSON is \(json.kind), expected an object") }

        var metadata: [String: String] = [:]
        var infos: [SafetensorsTensorInfo] = []
        let dataStart = 8 + n
        let dataLength = bytes.count - dataStart
        for key in root.keys {
            let value = root[key]!
            if key == "__metadata__" {
                // mlx writes `"__metadata__": null`; the reference reader takes null as no metadata.
                if case .null = value { continue }
                guard let m = value.object else { throw FormatError(path, "__metadata__ is \(value.kind), expected an object of strings") }
                for k in m.keys {
                    guard let s = m[k]!.string else {
                        throw FormatError(path, "__metadata__[\"\(k)\"] is \(m[k]!.kind); safetensors metadata values must be strings")
                    }
                    metadata[k] = s
                }
                continue
            }
            infos.append(try Self.tensorInfo(key, value, dataStart: dataStart, path: path))
        }
        // The spans must tile the data section exactly, as the reference requires.
        infos.sort { ($0.dataOffsets.lowerBound, $0.dataOffsets.upperBound, $0.name) < ($1.dataOffsets.lowerBound, $1.dataOffsets.upperBound, $1.name) }
        var end = 0
        for t in infos {
            if t.dataOffsets.lowerBound < end {
                throw FormatError(path, "tensor \(t.name): data_offsets [\(t.dataOffsets.lowerBound), \(t.dataOffsets.upperBound)] overlap the previous tensor, which ends at \(end); the header is corrupt")
            }
            if t.dataOffsets.lowerBound > end {
                throw FormatError(path, "tensor \(t.name): data_offsets start at \(t.dataOffsets.lowerBound), leaving a gap after the previous tensor (which ends at \(end)); the header is corrupt")
            }
            end = t.dataOffsets.upperBound
        }
        if end > dataLength {
            let last = infos.last!
            throw FormatError(path, "tensor \(last.name): data_offsets end at \(end), past the end of the data (\(dataLength) bytes): the file is truncated, re-download it")
        }
        if end < dataLength {
            throw FormatError(path, "the data section has \(dataLength) bytes but the tensors cover only \(end): the header and the data disagree (the reference rejects this too)")
        }
        self.metadata = metadata
        self.tensors = infos
        var index: [String: Int] = [:]
        for (i, t) in infos.enumerated() { index[t.name] = i }
        self.index = index
    }

    static func tensorInfo(_ name: String, _ value: JSONValue, dataStart: Int, path: String) throws -> SafetensorsTensorInfo {
        guard let o = value.object else { throw FormatError(path, "tensor \(name): entry is \(value.kind), expected an object with dtype, shape and data_offsets") }
        guard let dtypeValue = o["dtype"] else { throw FormatError(path, "tensor \(name): missing \"dtype\"") }
        guard let dtypeName = dtypeValue.string else { throw FormatError(path, "tensor \(name): dtype is \(dtypeValue.kind), expected a string") }
        guard let dtype = SafetensorsDType(rawValue: dtypeName) else {
            throw FormatError(path, "tensor \(name): unknown dtype \"\(dtypeName)\"; Loft reads \(SafetensorsDType.supportedList)")
        }
        guard let shapeValue = o["shape"], let shapeArray = shapeValue.array else {
            throw FormatError(path, "tensor \(name): \"shape\" is missing or not an array")
        }
        var shape: [Int] = []
        var count = 1
        for d in shapeArray {
            guard case .int(let v) = d, v >= 0, let dim = Int(exactly: v) else {
                throw FormatError(path, "tensor \(name): shape \(Self.render(shapeArray)) must be non-negative integers")
            }
            let (m, o) = count.multipliedReportingOverflow(by: dim)
            guard !o else { throw FormatError(path, "tensor \(name): shape \(Self.render(shapeArray)) is too large") }
            count = m
            shape.append(dim)
        }
        guard let offValue = o["data_offsets"], let offs = offValue.array, offs.count == 2,
              case .int(let b) = offs[0], case .int(let e) = offs[1] else {
            throw FormatError(path, "tensor \(name): \"data_offsets\" must be an array of two integers [begin, end]")
        }
        guard b >= 0, e >= b, e <= Int64(Int.max / 2) else {
            throw FormatError(path, "tensor \(name): data_offsets [\(b), \(e)] are invalid (negative, or end before begin)")
        }
        let (bytes, o2) = count.multipliedReportingOverflow(by: dtype.byteSize)
        guard !o2, bytes == Int(e - b) else {
            throw FormatError(path, "tensor \(name): shape \(shape) × \(dtype) (\(dtype.byteSize) bytes) needs \(o2 ? "too many" : String(bytes)) bytes, but data_offsets [\(b), \(e)] span \(e - b); the header is corrupt")
        }
        return SafetensorsTensorInfo(name: name, dtype: dtype, shape: shape, dataOffsets: Int(b) ..< Int(e), offset: dataStart + Int(b))
    }

    static func render(_ a: [JSONValue]) -> String {
        "[" + a.map { v -> String in
            switch v {
            case .int(let i): return String(i)
            case .double(let d): return String(d)
            case .string(let s): return "\"\(s)\""
            default: return v.kind
            }
        }.joined(separator: ", ") + "]"
    }

    public var tensorNames: [String] { tensors.map(\.name) }

    public func info(named name: String) -> SafetensorsTensorInfo? { index[name].map { tensors[$0] } }

    /// The tensor with its bytes in place, or nil when the file has no such tensor.
    public func tensor(named name: String) -> SafetensorsTensor? {
        guard let info = info(named: name) else { return nil }
        return SafetensorsTensor(info: info, bytes: UnsafeRawBufferPointer(rebasing: file.bytes[info.offset ..< info.offset + info.byteCount]), owner: file)
    }

    /// Like `tensor(named:)`, but a missing tensor is an error that names the file.
    public func require(_ name: String) throws -> SafetensorsTensor {
        guard let t = tensor(named: name) else {
            throw FormatError(path, "no tensor named \(name) (the file has \(tensors.count) tensors\(tensors.isEmpty ? "" : ", e.g. \(tensors.prefix(3).map(\.name).joined(separator: ", "))"))")
        }
        return t
    }

    /// The tensor's values as float32, from any dtype.
    public func floats(named name: String) throws -> [Float] { try require(name).floats() }
}
