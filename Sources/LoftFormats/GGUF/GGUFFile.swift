import Foundation

/// One tensor's entry in a GGUF file.
public struct GGUFTensorInfo: Sendable {
    public let name: String
    /// Dimensions as GGUF stores them: the fastest-varying (innermost) first.
    public let dimensions: [Int]
    public let type: GGMLType
    /// Byte offset from the start of the file.
    public let offset: Int
    public let byteCount: Int

    public var elementCount: Int { dimensions.reduce(1, *) }
    /// Row-major shape, outermost first, as PyTorch and safetensors write it.
    public var shape: [Int] { dimensions.reversed() }
}

/// A memory-mapped GGUF v2/v3 file: metadata and tensor directory, with the
/// tensor bytes read in place.
public final class GGUFFile: @unchecked Sendable {
    public let path: String
    public let version: Int
    public let metadata: [String: GGUFValue]
    /// Metadata keys in file order (for listing and for writing back).
    public let metadataKeys: [String]
    public let tensors: [GGUFTensorInfo]
    public let alignment: Int
    private let file: MappedFile
    private let index: [String: Int]

    static let magic: UInt32 = 0x4655_4747  // "GGUF" little-endian

    public init(path: String) throws {
        file = try MappedFile(path: path)
        self.path = path
        var r = ByteReader(file.bytes, file: path)
        if file.bytes.count < 8 {
            // Too short for magic and version: truncated if what is there is the start of "GGUF".
            let isPrefix = zip(file.bytes, "GGUF".utf8).allSatisfy { $0 == $1 }
            throw FormatError(path, isPrefix
                ? "truncated: \(file.bytes.count) bytes, too short for a GGUF header; re-download it"
                : "not a GGUF file (the first 4 bytes are not 'GGUF')")
        }
        guard try r.read(UInt32.self, "magic") == Self.magic else {
            throw FormatError(path, "not a GGUF file (the first 4 bytes are not 'GGUF')")
        }
        let version = Int(try r.read(UInt32.self, "version"))
        guard version == 2 || version == 3 else {
            throw FormatError(path, "GGUF version \(version) is not supported (Loft reads versions 2 and 3)")
        }
        self.version = version
        let tensorCount = try r.read(UInt64.self, "tensor count")
        let kvCount = try r.read(UInt64.self, "metadata count")
        // Each entry takes at least 8 bytes, which bounds honest counts by the file size.
        guard tensorCount < UInt64(file.bytes.count / 8), kvCount < UInt64(file.bytes.count / 8) else {
            throw FormatError(path, "header claims \(tensorCount) tensors and \(kvCount) metadata entries, more than the file can hold; the file is corrupt")
        }
        var metadata: [String: GGUFValue] = [:]
        var keys: [String] = []
        for i in 0 ..< Int(kvCount) {
            let key = try Self.readString(&r, "metadata key #\(i)")
            let type = try r.read(UInt32.self, "type of \(key)")
            metadata[key] = try Self.readValue(&r, type: type, key: key, depth: 0)
            keys.append(key)
        }
        self.metadata = metadata
        self.metadataKeys = keys
        let alignment = metadata["general.alignment"]?.int ?? 32
        guard alignment > 0, alignment & (alignment - 1) == 0 else {
            throw FormatError(path, "general.alignment is \(alignment), expected a power of two")
        }
        self.alignment = alignment

        var infos: [(String, [Int], GGMLType, Int)] = []
        for i in 0 ..< Int(tensorCount) {
            let name = try Self.readString(&r, "name of tensor #\(i)")
            let nDims = Int(try r.read(UInt32.self, "rank of \(name)"))
            guard nDims >= 1, nDims <= 4 else { throw FormatError(path, "tensor \(name) has rank \(nDims); GGUF allows 1 to 4") }
            var dims: [Int] = []
            for d in 0 ..< nDims {
                let n = try r.read(UInt64.self, "dimension \(d) of \(name)")
                guard n > 0, n < 1 << 40 else { throw FormatError(path, "tensor \(name) has dimension \(n); the file is corrupt") }
                dims.append(Int(n))
            }
            let rawType = try r.read(UInt32.self, "type of \(name)")
            guard let type = GGMLType(rawValue: rawType) else {
                throw FormatError(path, "tensor \(name) has unknown ggml type \(rawType); this file needs a newer Loft")
            }
            let offset = try r.read(UInt64.self, "offset of \(name)")
            guard offset < UInt64(file.bytes.count) else {
                throw FormatError(path, "tensor \(name) starts at offset \(offset), past the end of the file (\(file.bytes.count) bytes); the file is truncated")
            }
            infos.append((name, dims, type, Int(offset)))
        }
        let dataStart = (r.offset + alignment - 1) / alignment * alignment
        var tensors: [GGUFTensorInfo] = []
        var index: [String: Int] = [:]
        for (name, dims, type, relative) in infos {
            var count = 1
            for d in dims {
                let (m, o) = count.multipliedReportingOverflow(by: d)
                guard !o else { throw FormatError(path, "tensor \(name) is too large") }
                count = m
            }
            guard let bytes = type.byteCount(elements: count), dims[0] % type.blockLayout.elements == 0 else {
                throw FormatError(path, "tensor \(name) has \(dims[0]) elements per row, not a multiple of the \(type) block size \(type.blockLayout.elements)")
            }
            let start = dataStart + relative
            guard start <= file.bytes.count, bytes <= file.bytes.count - start else {
                throw FormatError(path, "tensor \(name) (\(type), \(bytes) bytes at offset \(start)) runs past the end of the file (\(file.bytes.count) bytes); the file is truncated, re-download it")
            }
            index[name] = tensors.count
            tensors.append(GGUFTensorInfo(name: name, dimensions: dims, type: type, offset: start, byteCount: bytes))
        }
        self.tensors = tensors
        self.index = index
    }

    public func tensor(named name: String) -> GGUFTensorInfo? {
        index[name].map { tensors[$0] }
    }

    /// The tensor's raw bytes, in place in the memory map.
    public func data(for info: GGUFTensorInfo) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: file.bytes[info.offset ..< info.offset + info.byteCount])
    }

    /// The architecture name (`general.architecture`), e.g. "llama".
    public var architecture: String? { metadata["general.architecture"]?.string }

    static func readString(_ r: inout ByteReader, _ what: String) throws -> String {
        let n = try r.read(UInt64.self, "length of \(what)")
        guard n <= UInt64(r.remaining) else {
            throw FormatError(r.file, "\(what) claims \(n) bytes at offset \(r.offset), more than the \(r.remaining) left; the file is truncated or corrupt")
        }
        return try r.readString(count: Int(n), what)
    }

    static func readValue(_ r: inout ByteReader, type: UInt32, key: String, depth: Int) throws -> GGUFValue {
        switch type {
        case 0: return .uint8(try r.read(UInt8.self, key))
        case 1: return .int8(try r.read(Int8.self, key))
        case 2: return .uint16(try r.read(UInt16.self, key))
        case 3: return .int16(try r.read(Int16.self, key))
        case 4: return .uint32(try r.read(UInt32.self, key))
        case 5: return .int32(try r.read(Int32.self, key))
        case 6: return .float32(try r.readFloat(key))
        case 7:
            let b = try r.read(UInt8.self, key)
            return .bool(b != 0)
        case 8: return .string(try readString(&r, key))
        case 9:
            guard depth < 4 else { throw FormatError(r.file, "\(key): arrays nested too deeply") }
            let elementType = try r.read(UInt32.self, "element type of \(key)")
            let n = try r.read(UInt64.self, "length of \(key)")
            guard n <= UInt64(r.remaining) else {
                throw FormatError(r.file, "\(key) claims \(n) elements, more than the file holds; the file is truncated or corrupt")
            }
            var out: [GGUFValue] = []
            out.reserveCapacity(Int(n))
            for _ in 0 ..< Int(n) { out.append(try readValue(&r, type: elementType, key: key, depth: depth + 1)) }
            return .array(out)
        case 10: return .uint64(try r.read(UInt64.self, key))
        case 11: return .int64(try r.read(Int64.self, key))
        case 12: return .float64(try r.readDouble(key))
        default:
            throw FormatError(r.file, "metadata \(key) has unknown value type \(type); the file is corrupt or needs a newer Loft")
        }
    }
}
