import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A read-only memory map of a whole file. Weights stay on disk until touched,
/// so opening a multi-gigabyte model costs nothing until its tensors are read.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let bytes: UnsafeRawBufferPointer
    private let mapped: Bool

    public init(path: String) throws {
        self.path = path
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw FormatError(path, "file not found; check the path")
        }
        if isDir.boolValue { throw FormatError(path, "is a directory, expected a file") }
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw FormatError(path, "cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw FormatError(path, "cannot stat: \(String(cString: strerror(errno)))") }
        let size = Int(st.st_size)
        if size == 0 {
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            mapped = false
            return
        }
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw FormatError(path, "cannot memory-map: \(String(cString: strerror(errno)))")
        }
        bytes = UnsafeRawBufferPointer(start: p, count: size)
        mapped = true
    }

    deinit {
        if mapped, let base = bytes.baseAddress {
            munmap(UnsafeMutableRawPointer(mutating: base), bytes.count)
        }
    }
}

/// A bounds-checked little-endian reader over a byte buffer. Every read that
/// would run past the end throws instead of trapping, so a truncated or corrupt
/// file gives an error that says where it ended.
public struct ByteReader {
    public let bytes: UnsafeRawBufferPointer
    public let file: String
    public var offset: Int

    public init(_ bytes: UnsafeRawBufferPointer, file: String, offset: Int = 0) {
        self.bytes = bytes
        self.file = file
        self.offset = offset
    }

    public var remaining: Int { bytes.count - offset }

    mutating func need(_ n: Int, _ what: String) throws {
        guard n >= 0, n <= remaining else {
            throw FormatError(file, "truncated: needed \(n) bytes for \(what) at offset \(offset), the file has \(bytes.count) bytes; re-download it")
        }
    }

    public mutating func read<T: FixedWidthInteger>(_ type: T.Type, _ what: String) throws -> T {
        try need(MemoryLayout<T>.size, what)
        let v = bytes.loadUnaligned(fromByteOffset: offset, as: T.self)
        offset += MemoryLayout<T>.size
        return T(littleEndian: v)
    }

    public mutating func readFloat(_ what: String) throws -> Float {
        Float(bitPattern: try read(UInt32.self, what))
    }

    public mutating func readDouble(_ what: String) throws -> Double {
        Double(bitPattern: try read(UInt64.self, what))
    }

    public mutating func readBytes(_ n: Int, _ what: String) throws -> UnsafeRawBufferPointer {
        try need(n, what)
        let slice = UnsafeRawBufferPointer(rebasing: bytes[offset ..< offset + n])
        offset += n
        return slice
    }

    /// UTF-8 text; invalid sequences are repaired rather than rejected, since
    /// some converters write raw byte tokens into string arrays.
    public mutating func readString(count n: Int, _ what: String) throws -> String {
        let raw = try readBytes(n, what)
        return String(decoding: raw, as: UTF8.self)
    }
}
