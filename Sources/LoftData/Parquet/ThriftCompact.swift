import Foundation

/// A value of Thrift's compact protocol, the encoding of Parquet's footer and
/// page headers (https://github.com/apache/thrift/blob/master/doc/specs/thrift-compact-protocol.md).
/// Decoded generically, then read field by field: Parquet's structs have optional
/// fields that newer writers add, and unknown ones must be skipped, not refused.
indirect enum ThriftValue {
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case binary([UInt8])
    case list([ThriftValue])
    case structure(ThriftStruct)
    case map([(ThriftValue, ThriftValue)])

    var int: Int64? { if case .int(let v) = self { return v }; return nil }
    var bool: Bool? { if case .bool(let v) = self { return v }; return nil }
    var binary: [UInt8]? { if case .binary(let v) = self { return v }; return nil }
    var string: String? { binary.map { String(decoding: $0, as: UTF8.self) } }
    var list: [ThriftValue]? { if case .list(let v) = self { return v }; return nil }
    var structure: ThriftStruct? { if case .structure(let v) = self { return v }; return nil }
}

/// A decoded Thrift struct: its fields by id.
struct ThriftStruct {
    var fields: [Int16: ThriftValue] = [:]
    subscript(_ id: Int16) -> ThriftValue? { fields[id] }
    func int(_ id: Int16) -> Int64? { fields[id]?.int }
    func string(_ id: Int16) -> String? { fields[id]?.string }
    func structure(_ id: Int16) -> ThriftStruct? { fields[id]?.structure }
    func list(_ id: Int16) -> [ThriftValue]? { fields[id]?.list }
}

struct ThriftError: Error { let message: String }

/// Reads compact-protocol values from bytes, never past their end.
struct ThriftCompactReader {
    let bytes: [UInt8]
    private(set) var position: Int
    let end: Int
    /// Nesting deeper than this is corrupt data, not a Parquet footer.
    static let maxDepth = 64

    init(_ bytes: [UInt8], from start: Int = 0, to end: Int? = nil) {
        self.bytes = bytes
        position = start
        self.end = min(end ?? bytes.count, bytes.count)
    }

    mutating func byte() throws -> UInt8 {
        guard position < end else { throw ThriftError(message: "the metadata ends in the middle of a value") }
        defer { position += 1 }
        return bytes[position]
    }

    mutating func varint() throws -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let b = try byte()
            guard shift < 64 else { throw ThriftError(message: "a varint is longer than 64 bits") }
            result |= UInt64(b & 0x7f) << shift
            if b & 0x80 == 0 { return result }
            shift += 7
        }
    }

    mutating func zigzag() throws -> Int64 {
        let u = try varint()
        return Int64(bitPattern: (u >> 1) ^ (0 &- (u & 1)))
    }

    /// A struct: fields until STOP.
    mutating func readStruct(depth: Int = 0) throws -> ThriftStruct {
        guard depth < Self.maxDepth else { throw ThriftError(message: "the metadata nests deeper than \(Self.maxDepth) levels") }
        var s = ThriftStruct()
        var lastID: Int16 = 0
        while true {
            let header = try byte()
            if header == 0 { return s }
            let type = header & 0x0f
            let delta = header >> 4
            let id: Int16
            if delta == 0 {
                let z = try zigzag()
                guard let i = Int16(exactly: z) else { throw ThriftError(message: "field id \(z) is out of range") }
                id = i
            } else {
                id = lastID &+ Int16(delta)
            }
            lastID = id
            s.fields[id] = try readValue(type: type, depth: depth + 1)
        }
    }

    mutating func readValue(type: UInt8, depth: Int) throws -> ThriftValue {
        switch type {
        case 1: return .bool(true)
        case 2: return .bool(false)
        case 3: return .int(Int64(Int8(bitPattern: try byte())))
        case 4, 5, 6: return .int(try zigzag())
        case 7:
            guard end - position >= 8 else { throw ThriftError(message: "the metadata ends in the middle of a double") }
            var u: UInt64 = 0
            for k in 0..<8 { u |= UInt64(bytes[position + k]) << (8 * UInt64(k)) }
            position += 8
            return .double(Double(bitPattern: u))
        case 8:
            let n = try varint()
            guard n <= UInt64(end - position) else { throw ThriftError(message: "a string of \(n) bytes runs past the end of the metadata") }
            let v = Array(bytes[position..<(position + Int(n))])
            position += Int(n)
            return .binary(v)
        case 9, 10:
            let header = try byte()
            var count = UInt64(header >> 4)
            if count == 15 { count = try varint() }
            let elementType = header & 0x0f
            // Every element takes at least one byte (bools in lists too).
            guard count <= UInt64(end - position) else { throw ThriftError(message: "a list of \(count) elements is longer than the metadata") }
            guard depth < Self.maxDepth else { throw ThriftError(message: "the metadata nests deeper than \(Self.maxDepth) levels") }
            var items: [ThriftValue] = []
            items.reserveCapacity(Int(count))
            for _ in 0..<count {
                if elementType == 1 || elementType == 2 {
                    items.append(.bool(try byte() == 1))
                } else {
                    items.append(try readValue(type: elementType, depth: depth + 1))
                }
            }
            return .list(items)
        case 11:
            let count = try varint()
            guard count <= UInt64(end - position) else { throw ThriftError(message: "a map of \(count) entries is longer than the metadata") }
            if count == 0 { return .map([]) }
            let types = try byte()
            var items: [(ThriftValue, ThriftValue)] = []
            for _ in 0..<count {
                // Inside maps (as in lists), a boolean is a byte of its own.
                var pair: [ThriftValue] = []
                for t in [types >> 4, types & 0x0f] {
                    pair.append(t == 1 || t == 2 ? .bool(try byte() == 1) : try readValue(type: t, depth: depth + 1))
                }
                items.append((pair[0], pair[1]))
            }
            return .map(items)
        case 12: return .structure(try readStruct(depth: depth))
        default: throw ThriftError(message: "unknown compact type \(type)")
        }
    }
}
