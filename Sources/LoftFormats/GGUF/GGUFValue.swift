/// A GGUF metadata value, as the file stores it (GGUF v2/v3 value types).
public enum GGUFValue: Sendable, Equatable {
    case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16)
    case uint32(UInt32), int32(Int32), uint64(UInt64), int64(Int64)
    case float32(Float), float64(Double), bool(Bool), string(String)
    case array([GGUFValue])

    public var int: Int? {
        switch self {
        case .uint8(let v): return Int(v)
        case .int8(let v): return Int(v)
        case .uint16(let v): return Int(v)
        case .int16(let v): return Int(v)
        case .uint32(let v): return Int(v)
        case .int32(let v): return Int(v)
        case .uint64(let v): return Int(exactly: v)
        case .int64(let v): return Int(v)
        case .bool(let v): return v ? 1 : 0
        default: return nil
        }
    }

    public var double: Double? {
        switch self {
        case .float32(let v): return Double(v)
        case .float64(let v): return v
        default: return int.map(Double.init)
        }
    }

    public var float: Float? { double.map(Float.init) }

    public var bool: Bool? {
        if case .bool(let v) = self { return v }
        return int.map { $0 != 0 }
    }

    public var string: String? {
        if case .string(let v) = self { return v }
        return nil
    }

    public var array: [GGUFValue]? {
        if case .array(let v) = self { return v }
        return nil
    }

    public var strings: [String]? { array?.compactMap(\.string) }
    public var ints: [Int]? { array?.compactMap(\.int) }
    public var floats: [Float]? { array?.compactMap(\.float) }
}
