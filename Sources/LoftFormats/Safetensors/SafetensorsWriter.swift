import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes .safetensors files byte for byte as the reference `safetensors` package
/// does: compact JSON header, `__metadata__` first, tensors ordered by dtype (the
/// reference's order: U64, I64, F64, F32, U32, I32, BF16, F16, U16, I16, F8_E8M0,
/// F8_E4M3, F8_E5M2, I8, U8, BOOL) then by name, the header padded with spaces to
/// a multiple of 8 bytes. The reference writes metadata keys in hash order, so
/// with more than one metadata key only the order differs; Loft sorts them.
/// The file is written to a temporary name and renamed into place.
public struct SafetensorsWriter {
    public struct Entry {
        public let name: String
        public let dtype: SafetensorsDType
        public let shape: [Int]
        public let bytes: [UInt8]
    }

    /// `__metadata__`; nil writes none, `[:]` writes an empty object (as the reference does).
    public var metadata: [String: String]?
    public private(set) var entries: [Entry] = []
    private var names: Set<String> = []

    public init(metadata: [String: String]? = nil) {
        self.metadata = metadata
    }

    /// Adds a tensor. `bytes` are its little-endian elements, row-major.
    public mutating func add(name: String, dtype: SafetensorsDType, shape: [Int], bytes: [UInt8]) throws {
        guard name != "__metadata__" else { throw FormatError(name, "\"__metadata__\" is reserved and cannot name a tensor") }
        guard !names.contains(name) else { throw FormatError(name, "a tensor with this name was already added") }
        var count = 1
        for d in shape {
            guard d >= 0 else { throw FormatError(name, "shape \(shape) has a negative dimension") }
            let (m, o) = count.multipliedReportingOverflow(by: d)
            guard !o else { throw FormatError(name, "shape \(shape) is too large") }
            count = m
        }
        let (need, o) = count.multipliedReportingOverflow(by: dtype.byteSize)
        guard !o, need == bytes.count else {
            throw FormatError(name, "shape \(shape) × \(dtype) needs \(need) bytes, but \(bytes.count) were given")
        }
        names.insert(name)
        entries.append(Entry(name: name, dtype: dtype, shape: shape, bytes: bytes))
    }

    public mutating func add(name: String, dtype: SafetensorsDType, shape: [Int], bytes: UnsafeRawBufferPointer) throws {
        try add(name: name, dtype: dtype, shape: shape, bytes: [UInt8](bytes))
    }

    /// Adds float32 values as an F32 tensor.
    public mutating func add(name: String, shape: [Int], floats: [Float]) throws {
        let bytes = floats.withUnsafeBytes { [UInt8]($0) }  // little-endian hosts only (x86-64, arm64)
        try add(name: name, dtype: .f32, shape: shape, bytes: bytes)
    }

    /// Entries in the order the reference writes them.
    var ordered: [Entry] {
        entries.sorted { a, b in
            if a.dtype.writeRank != b.dtype.writeRank { return a.dtype.writeRank > b.dtype.writeRank }
            return a.name.utf8.lexicographicallyPrecedes(b.name.utf8)
        }
    }

    /// The 8-byte length prefix and the padded JSON header.
    public func header() -> [UInt8] {
        var json: [UInt8] = [UInt8(ascii: "{")]
        var first = true
        func comma() { if !first { json.append(UInt8(ascii: ",")) }; first = false }
        if let metadata {
            comma()
            JSONWriter.quoted("__metadata__", into: &json)
            json += Array(":{".utf8)
            for (i, k) in metadata.keys.sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) }).enumerated() {
                if i > 0 { json.append(UInt8(ascii: ",")) }
                JSONWriter.quoted(k, into: &json)
                json.append(UInt8(ascii: ":"))
                JSONWriter.quoted(metadata[k]!, into: &json)
            }
            json.append(UInt8(ascii: "}"))
        }
        var offset = 0
        for e in ordered {
            comma()
            JSONWriter.quoted(e.name, into: &json)
            json += Array(":{\"dtype\":\"\(e.dtype.rawValue)\",\"shape\":[\(e.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + e.bytes.count)]}".utf8)
            offset += e.bytes.count
        }
        json.append(UInt8(ascii: "}"))
        while json.count % 8 != 0 { json.append(UInt8(ascii: " ")) }
        var out = [UInt8](repeating: 0, count: 8)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.replaceSubrange(0 ..< 8, with: $0) }
        return out + json
    }

    /// The whole file in memory.
    public func serialized() -> [UInt8] {
        var out = header()
        for e in ordered { out += e.bytes }
        return out
    }

    /// Writes the file atomically: to a temporary file beside `path`, flushed,
    /// then renamed over `path`. On failure `path` is left as it was.
    public func write(to path: String) throws {
        let dir = URL(fileURLWithPath: path).deletingLastPathComponent().path
        let tmp = "\(path).tmp-\(getpid())-\(UInt32.random(in: 0 ... .max))"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0o644)
        guard fd >= 0 else {
            throw FormatError(path, "cannot create \(tmp): \(String(cString: strerror(errno))); check that \(dir) exists and is writable")
        }
        var ok = false
        defer {
            if !ok { unlink(tmp) }
        }
        do {
            defer { close(fd) }
            try Self.writeAll(fd, header(), path)
            for e in ordered { try Self.writeAll(fd, e.bytes, path) }
            guard fsync(fd) == 0 else { throw FormatError(path, "cannot flush: \(String(cString: strerror(errno)))") }
        }
        guard rename(tmp, path) == 0 else {
            throw FormatError(path, "cannot rename \(tmp) into place: \(String(cString: strerror(errno)))")
        }
        ok = true
    }

    static func writeAll(_ fd: Int32, _ bytes: [UInt8], _ path: String) throws {
        try bytes.withUnsafeBytes { buf in
            var done = 0
            while done < buf.count {
                #if canImport(Glibc)
                let n = Glibc.write(fd, buf.baseAddress! + done, buf.count - done)
                #else
                let n = Darwin.write(fd, buf.baseAddress! + done, buf.count - done)
                #endif
                if n < 0 {
                    if errno == EINTR { continue }
                    throw FormatError(path, "write failed: \(String(cString: strerror(errno))) (disk full?)")
                }
                done += n
            }
        }
    }
}
