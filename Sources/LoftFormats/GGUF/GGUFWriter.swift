import Foundation

/// Writes GGUF v3 files: metadata of every value type in insertion order,
/// a tensor directory, and tensor data aligned to `alignment` bytes (32, as
/// llama.cpp's writer does). The file is written under a temporary name and
/// renamed into place.
public struct GGUFWriter {
    public struct TensorEntry {
        public let name: String
        /// Row-major shape, outermost first (written reversed, as GGUF stores it).
        public let shape: [Int]
        public let type: GGMLType
        public let data: [UInt8]
    }

    public let alignment: Int
    public private(set) var keys: [String] = []
    public private(set) var values: [String: GGUFValue] = [:]
    public private(set) var tensors: [TensorEntry] = []
    private var tensorNames: Set<String> = []

    public init(alignment: Int = 32) {
        precondition(alignment > 0 && alignment & (alignment - 1) == 0, "GGUF alignment must be a power of two")
        self.alignment = alignment
        if alignment != 32 { set("general.alignment", .uint32(UInt32(alignment))) }
    }

    /// Sets a metadata value (a key set twice keeps its first position).
    public mutating func set(_ key: String, _ value: GGUFValue) {
        if values[key] == nil { keys.append(key) }
        values[key] = value
    }

    public mutating func remove(_ key: String) {
        guard values.removeValue(forKey: key) != nil else { return }
        keys.removeAll { $0 == key }
    }

    /// Adds a tensor whose `data` is already encoded in `type` (row-major).
    public mutating func addTensor(name: String, shape: [Int], type: GGMLType, data: [UInt8]) throws {
        guard !name.isEmpty, name.utf8.count < 64 else {
            throw FormatError(name, "a GGUF tensor name must have 1 to 63 bytes")
        }
        guard !tensorNames.contains(name) else { throw FormatError(name, "a tensor with this name was already added") }
        guard (1 ... 4).contains(shape.count), shape.allSatisfy({ $0 > 0 }) else {
            throw FormatError(name, "shape \(shape): GGUF tensors have 1 to 4 positive dimensions")
        }
        let count = shape.reduce(1, *)
        guard shape.last! % type.blockLayout.elements == 0, let need = type.byteCount(elements: count) else {
            throw FormatError(name, "rows of \(shape.last!) elements are not a whole number of \(type) blocks (\(type.blockLayout.elements)); export this tensor as F16 or F32")
        }
        guard need == data.count else {
            throw FormatError(name, "shape \(shape) as \(type) needs \(need) bytes, but \(data.count) were given")
        }
        tensorNames.insert(name)
        tensors.append(TensorEntry(name: name, shape: shape, type: type, data: data))
    }

    /// The whole file as bytes (header, directory, padding, data).
    public func serialized() throws -> [UInt8] {
        var out: [UInt8] = []
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func str(_ s: String) { u64(UInt64(s.utf8.count)); out.append(contentsOf: s.utf8) }
        func typeCode(_ v: GGUFValue) -> UInt32 {
            switch v {
            case .uint8: return 0
            case .int8: return 1
            case .uint16: return 2
            case .int16: return 3
            case .uint32: return 4
            case .int32: return 5
            case .float32: return 6
            case .bool: return 7
            case .string: return 8
            case .array: return 9
            case .uint64: return 10
            case .int64: return 11
            case .float64: return 12
            }
        }
        func value(_ v: GGUFValue, key: String) throws {
            switch v {
            case .uint8(let x): out.append(x)
            case .int8(let x): out.append(UInt8(bitPattern: x))
            case .uint16(let x): withUnsafeBytes(of: x.littleEndian) { out.append(contentsOf: $0) }
            case .int16(let x): withUnsafeBytes(of: x.littleEndian) { out.append(contentsOf: $0) }
            case .uint32(let x): u32(x)
            case .int32(let x): u32(UInt32(bitPattern: x))
            case .uint64(let x): u64(x)
            case .int64(let x): u64(UInt64(bitPattern: x))
            case .float32(let x): u32(x.bitPattern)
            case .float64(let x): u64(x.bitPattern)
            case .bool(let x): out.append(x ? 1 : 0)
            case .string(let s): str(s)
            case .array(let items):
                // An empty array is written with element type uint8 (any type reads back as []).
                let t = items.first.map(typeCode) ?? 0
                guard items.allSatisfy({ typeCode($0) == t }) else {
                    throw FormatError(key, "a GGUF array must hold one value type; this one mixes several")
                }
                u32(t)
                u64(UInt64(items.count))
                for item in items { try value(item, key: key) }
            }
        }
        u32(GGUFFile.magic)
        u32(3)
        u64(UInt64(tensors.count))
        u64(UInt64(keys.count))
        for key in keys {
            let v = values[key]!
            str(key)
            u32(typeCode(v))
            try value(v, key: key)
        }
        var offsets: [Int] = []
        var offset = 0
        for t in tensors {
            offsets.append(offset)
            offset += (t.data.count + alignment - 1) / alignment * alignment
        }
        for (t, off) in zip(tensors, offsets) {
            str(t.name)
            u32(UInt32(t.shape.count))
            for d in t.shape.reversed() { u64(UInt64(d)) }
            u32(t.type.rawValue)
            u64(UInt64(off))
        }
        func pad() { while out.count % alignment != 0 { out.append(0) } }
        pad()
        out.reserveCapacity(out.count + offset)
        for t in tensors {
            out.append(contentsOf: t.data)
            pad()
        }
        return out
    }

    /// Writes the file atomically (temporary name, then rename).
    public func write(to path: String) throws {
        let bytes = try serialized()
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent()
        guard FileManager.default.fileExists(atPath: dir.path) else {
            throw FormatError(path, "directory \(dir.path) does not exist; create it first")
        }
        let tmp = dir.appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())")
        do {
            try Data(bytes).write(to: tmp)
            if FileManager.default.fileExists(atPath: path) { _ = try FileManager.default.replaceItemAt(url, withItemAt: tmp) }
            else { try FileManager.default.moveItem(at: tmp, to: url) }
        } catch {
            try? FileManager.default.removeItem(at: tmp)
            throw FormatError(path, "could not write: \(error.localizedDescription)")
        }
    }
}
