import Foundation

/// Parquet's footer (parquet.thrift's FileMetaData), the parts a reader of
/// rows needs: the schema, and per row group the column chunks' places.
/// https://github.com/apache/parquet-format/blob/master/src/main/thrift/parquet.thrift
struct ParquetFileMetadata {
    var schema: [ParquetSchemaElement]
    var numRows: Int64
    var rowGroups: [ParquetRowGroup]
    var createdBy: String?

    init(_ s: ThriftStruct) throws {
        guard let elements = s.list(2), !elements.isEmpty else { throw ThriftError(message: "the footer has no schema") }
        schema = try elements.map {
            guard let e = $0.structure else { throw ThriftError(message: "a schema element is not a struct") }
            return ParquetSchemaElement(e)
        }
        numRows = s.int(3) ?? 0
        rowGroups = try (s.list(4) ?? []).map {
            guard let g = $0.structure else { throw ThriftError(message: "a row group is not a struct") }
            return try ParquetRowGroup(g)
        }
        createdBy = s.string(6)
    }
}

/// Parquet's physical types.
enum ParquetPhysicalType: Int64 {
    case boolean = 0, int32 = 1, int64 = 2, int96 = 3, float = 4, double = 5, byteArray = 6, fixedLenByteArray = 7
}

enum ParquetRepetition: Int64 {
    case required = 0, optional = 1, repeated = 2
}

struct ParquetSchemaElement {
    var type: ParquetPhysicalType?
    var rawType: Int64?
    var typeLength: Int?
    var repetition: ParquetRepetition
    var name: String
    var numChildren: Int
    /// ConvertedType: 0 UTF8, 1 MAP, 2 MAP_KEY_VALUE, 3 LIST, 4 ENUM, 19 JSON, …
    var convertedType: Int64?
    /// The LogicalType union's field id: 1 STRING, 2 MAP, 3 LIST, 4 ENUM, 12 JSON, …
    var logicalType: Int16?

    init(_ s: ThriftStruct) {
        rawType = s.int(1)
        type = rawType.flatMap(ParquetPhysicalType.init(rawValue:))
        typeLength = s.int(2).map(Int.init(truncatingIfNeeded:))
        repetition = s.int(3).flatMap(ParquetRepetition.init(rawValue:)) ?? .required
        name = s.string(4) ?? ""
        numChildren = Int(truncatingIfNeeded: s.int(5) ?? 0)
        convertedType = s.int(6)
        logicalType = s.structure(10)?.fields.keys.first
    }

    var isList: Bool { convertedType == 3 || logicalType == 3 }
    var isMap: Bool { convertedType == 1 || convertedType == 2 || logicalType == 2 }
}

struct ParquetRowGroup {
    var columns: [ParquetColumnChunk]
    var numRows: Int64

    init(_ s: ThriftStruct) throws {
        columns = try (s.list(1) ?? []).map {
            guard let c = $0.structure else { throw ThriftError(message: "a column chunk is not a struct") }
            return try ParquetColumnChunk(c)
        }
        numRows = s.int(3) ?? 0
    }
}

/// Compression codecs (CompressionCodec).
enum ParquetCodec: Int64 {
    case uncompressed = 0, snappy = 1, gzip = 2, lzo = 3, brotli = 4, lz4 = 5, zstd = 6, lz4Raw = 7

    var name: String { ["UNCOMPRESSED", "SNAPPY", "GZIP", "LZO", "BROTLI", "LZ4", "ZSTD", "LZ4_RAW"][Int(rawValue)] }
}

struct ParquetColumnChunk {
    var filePath: String?
    var type: Int64
    var path: [String]
    var codec: Int64
    var numValues: Int64
    var totalCompressedSize: Int64
    var dataPageOffset: Int64
    var dictionaryPageOffset: Int64?

    init(_ s: ThriftStruct) throws {
        filePath = s.string(1)
        guard let m = s.structure(3) else { throw ThriftError(message: "a column chunk has no metadata") }
        type = m.int(1) ?? -1
        path = (m.list(3) ?? []).compactMap(\.string)
        codec = m.int(4) ?? 0
        numValues = m.int(5) ?? 0
        totalCompressedSize = m.int(7) ?? 0
        dataPageOffset = m.int(9) ?? 0
        dictionaryPageOffset = m.int(11)
    }

    /// Where the chunk's first page starts: the dictionary page when there is one.
    var start: Int64 {
        if let d = dictionaryPageOffset, d > 0, d < dataPageOffset { return d }
        return dataPageOffset
    }
}

/// Encodings of values and levels (Encoding).
enum ParquetEncoding: Int64 {
    case plain = 0, plainDictionary = 2, rle = 3, bitPacked = 4, deltaBinaryPacked = 5, deltaLengthByteArray = 6,
         deltaByteArray = 7, rleDictionary = 8, byteStreamSplit = 9

    static func name(_ raw: Int64) -> String {
        switch ParquetEncoding(rawValue: raw) {
        case .plain?: return "PLAIN"
        case .plainDictionary?: return "PLAIN_DICTIONARY"
        case .rle?: return "RLE"
        case .bitPacked?: return "BIT_PACKED"
        case .deltaBinaryPacked?: return "DELTA_BINARY_PACKED"
        case .deltaLengthByteArray?: return "DELTA_LENGTH_BYTE_ARRAY"
        case .deltaByteArray?: return "DELTA_BYTE_ARRAY"
        case .rleDictionary?: return "RLE_DICTIONARY"
        case .byteStreamSplit?: return "BYTE_STREAM_SPLIT"
        case nil: return "encoding \(raw)"
        }
    }
}

/// A page header (PageHeader): its kind, sizes and the data or dictionary header.
struct ParquetPageHeader {
    enum Kind: Int64 { case data = 0, index = 1, dictionary = 2, dataV2 = 3 }
    var kind: Int64
    var uncompressedSize: Int
    var compressedSize: Int
    var numValues: Int
    var encoding: Int64
    var definitionLevelEncoding: Int64 = 3
    var repetitionLevelEncoding: Int64 = 3
    // v2 only
    var numNulls = 0
    var numRows = 0
    var definitionLevelsLength = 0
    var repetitionLevelsLength = 0
    var isCompressed = true

    init(_ s: ThriftStruct) throws {
        kind = s.int(1) ?? -1
        uncompressedSize = Int(truncatingIfNeeded: s.int(2) ?? -1)
        compressedSize = Int(truncatingIfNeeded: s.int(3) ?? -1)
        numValues = 0
        encoding = 0
        guard uncompressedSize >= 0, compressedSize >= 0 else { throw ThriftError(message: "a page header has a negative size") }
        switch kind {
        case Kind.data.rawValue:
            guard let d = s.structure(5) else { throw ThriftError(message: "a data page has no data page header") }
            numValues = Int(truncatingIfNeeded: d.int(1) ?? -1)
            encoding = d.int(2) ?? 0
            definitionLevelEncoding = d.int(3) ?? 3
            repetitionLevelEncoding = d.int(4) ?? 3
        case Kind.dictionary.rawValue:
            guard let d = s.structure(7) else { throw ThriftError(message: "a dictionary page has no dictionary page header") }
            numValues = Int(truncatingIfNeeded: d.int(1) ?? -1)
            encoding = d.int(2) ?? 0
        case Kind.dataV2.rawValue:
            guard let d = s.structure(8) else { throw ThriftError(message: "a v2 data page has no data page header") }
            numValues = Int(truncatingIfNeeded: d.int(1) ?? -1)
            numNulls = Int(truncatingIfNeeded: d.int(2) ?? 0)
            numRows = Int(truncatingIfNeeded: d.int(3) ?? 0)
            encoding = d.int(4) ?? 0
            definitionLevelsLength = Int(truncatingIfNeeded: d.int(5) ?? 0)
            repetitionLevelsLength = Int(truncatingIfNeeded: d.int(6) ?? 0)
            isCompressed = d[7]?.bool ?? true
            guard definitionLevelsLength >= 0, repetitionLevelsLength >= 0,
                  definitionLevelsLength + repetitionLevelsLength <= compressedSize else {
                throw ThriftError(message: "a v2 data page's level lengths do not fit in the page")
            }
        default:
            break
        }
        guard numValues >= 0 else { throw ThriftError(message: "a page header has a negative value count") }
    }
}
