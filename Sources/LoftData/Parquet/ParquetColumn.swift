import Foundation
import LoftTemplates

/// One leaf column of a row group, decoded: a definition and a repetition level
/// per entry, and the values of the entries that are defined (Dremel's striping;
/// https://github.com/apache/parquet-format#nested-encoding).
struct ParquetColumnData {
    var defs: [Int32] = []
    var reps: [Int32] = []
    var values: [JinjaValue] = []
    /// Read cursors of the record assembly.
    var position = 0
    var valuePosition = 0
}

/// What a leaf column is: its place in the schema and how to decode its values.
struct ParquetLeaf {
    var path: String
    var type: ParquetPhysicalType
    var typeLength: Int
    var maxDef: Int
    var maxRep: Int
    /// Byte arrays that are text (all of them are read as text; binary is read as UTF-8 with replacements).
    var isText: Bool
}

struct ParquetColumnError: Error { let message: String }

/// Decodes the pages of one column chunk.
struct ParquetColumnDecoder {
    let leaf: ParquetLeaf
    let codec: Int64

    func decode(chunk: [UInt8], expectedValues: Int) throws -> ParquetColumnData {
        var out = ParquetColumnData()
        var dictionary: [JinjaValue]? = nil
        var p = 0
        var seen = 0
        while seen < expectedValues {
            guard p < chunk.count else {
                throw ParquetColumnError(message: "the column chunk ends after \(seen) of its \(expectedValues) values")
            }
            var t = ThriftCompactReader(chunk, from: p)
            let header: ParquetPageHeader
            do { header = try ParquetPageHeader(t.readStruct()) } catch let e as ThriftError {
                throw ParquetColumnError(message: "a page header is corrupt (\(e.message))")
            }
            let bodyStart = t.position
            guard header.compressedSize <= chunk.count - bodyStart else {
                throw ParquetColumnError(message: "a page header says \(header.compressedSize) bytes, past the end of the column chunk (\(chunk.count - bodyStart) left)")
            }
            let body = chunk[bodyStart..<(bodyStart + header.compressedSize)]
            p = bodyStart + header.compressedSize
            let isData = header.kind == ParquetPageHeader.Kind.data.rawValue || header.kind == ParquetPageHeader.Kind.dataV2.rawValue
            if isData && header.numValues > expectedValues - seen {
                throw ParquetColumnError(message: "a data page says \(header.numValues) values, but only \(expectedValues - seen) of the column chunk's \(expectedValues) are left")
            }
            switch header.kind {
            case ParquetPageHeader.Kind.dictionary.rawValue:
                let bytes = try decompress(body, header: header)
                guard header.encoding == ParquetEncoding.plain.rawValue || header.encoding == ParquetEncoding.plainDictionary.rawValue else {
                    throw ParquetColumnError(message: "a dictionary page is \(ParquetEncoding.name(header.encoding))-encoded; Parquet dictionaries are PLAIN")
                }
                var values: [JinjaValue] = []
                var q = bytes.startIndex
                try decodePlain(bytes[...], &q, count: header.numValues, into: &values)
                dictionary = values
            case ParquetPageHeader.Kind.data.rawValue:
                let bytes = try decompress(body, header: header)
                var q = 0
                let n = header.numValues
                let reps = leaf.maxRep > 0 ? try levelsV1(bytes, &q, count: n, max: leaf.maxRep, encoding: header.repetitionLevelEncoding, what: "repetition") : [Int32](repeating: 0, count: n)
                let defs = leaf.maxDef > 0 ? try levelsV1(bytes, &q, count: n, max: leaf.maxDef, encoding: header.definitionLevelEncoding, what: "definition") : [Int32](repeating: 0, count: n)
                try appendValues(bytes[q...], header: header, defs: defs, reps: reps, dictionary: dictionary, into: &out)
                seen += n
            case ParquetPageHeader.Kind.dataV2.rawValue:
                let n = header.numValues
                let repEnd = body.startIndex + header.repetitionLevelsLength
                let defEnd = repEnd + header.definitionLevelsLength
                let reps = leaf.maxRep > 0 ? try hybrid(body[body.startIndex..<repEnd], count: n, bitWidth: bitWidth(leaf.maxRep), max: leaf.maxRep, what: "repetition") : [Int32](repeating: 0, count: n)
                let defs = leaf.maxDef > 0 ? try hybrid(body[repEnd..<defEnd], count: n, bitWidth: bitWidth(leaf.maxDef), max: leaf.maxDef, what: "definition") : [Int32](repeating: 0, count: n)
                let valuesSize = header.uncompressedSize - header.repetitionLevelsLength - header.definitionLevelsLength
                guard valuesSize >= 0 else { throw ParquetColumnError(message: "a v2 page's levels are longer than the page") }
                let values: [UInt8]
                if header.isCompressed {
                    values = try decompress(body[defEnd...], size: valuesSize)
                } else {
                    guard body.count - (defEnd - body.startIndex) == valuesSize else {
                        throw ParquetColumnError(message: "an uncompressed v2 page holds a different number of bytes than its header says")
                    }
                    values = Array(body[defEnd...])
                }
                try appendValues(values[...], header: header, defs: defs, reps: reps, dictionary: dictionary, into: &out)
                seen += n
            default:
                continue  // index pages and unknown kinds: skipped by their size
            }
        }
        return out
    }

    func decompress(_ body: ArraySlice<UInt8>, header: ParquetPageHeader) throws -> [UInt8] {
        try decompress(body, size: header.uncompressedSize)
    }

    func decompress(_ body: ArraySlice<UInt8>, size: Int) throws -> [UInt8] {
        do { return try ParquetDecompressor.decompress(body, codec: codec, size: size) }
        catch let e as DecompressionError { throw ParquetColumnError(message: e.message) }
    }

    /// v1 levels: RLE (a 4-byte length, then the hybrid encoding) or the deprecated BIT_PACKED.
    func levelsV1(_ bytes: [UInt8], _ q: inout Int, count: Int, max: Int, encoding: Int64, what: String) throws -> [Int32] {
        let width = bitWidth(max)
        if encoding == ParquetEncoding.bitPacked.rawValue {
            let size = (count * width + 7) / 8
            guard bytes.count - q >= size else { throw ParquetColumnError(message: "the \(what) levels run past the page") }
            var out = [Int32](repeating: 0, count: count)
            // BIT_PACKED levels are packed from the most significant bit.
            for i in 0..<count {
                var v: Int32 = 0
                for b in 0..<width {
                    let bit = i * width + b
                    v = (v << 1) | Int32((bytes[q + bit / 8] >> (7 - UInt8(bit % 8))) & 1)
                }
                out[i] = v
            }
            q += size
            try check(out, max: max, what: what)
            return out
        }
        guard encoding == ParquetEncoding.rle.rawValue else {
            throw ParquetColumnError(message: "\(what) levels in \(ParquetEncoding.name(encoding)) are not supported")
        }
        guard bytes.count - q >= 4 else { throw ParquetColumnError(message: "the \(what) levels run past the page") }
        let length = Int(bytes[q]) | Int(bytes[q + 1]) << 8 | Int(bytes[q + 2]) << 16 | Int(bytes[q + 3]) << 24
        q += 4
        guard length >= 0, length <= bytes.count - q else {
            throw ParquetColumnError(message: "the \(what) levels say \(length) bytes, past the end of the page")
        }
        let out = try hybrid(bytes[q..<(q + length)], count: count, bitWidth: width, max: max, what: what)
        q += length
        return out
    }

    func check(_ levels: [Int32], max: Int, what: String) throws {
        if let bad = levels.first(where: { $0 > max || $0 < 0 }) {
            throw ParquetColumnError(message: "a \(what) level is \(bad), above the column's maximum \(max)")
        }
    }

    func hybrid(_ bytes: ArraySlice<UInt8>, count: Int, bitWidth: Int, max: Int, what: String) throws -> [Int32] {
        let out: [Int32]
        do { out = try RLEHybrid.decode(bytes, count: count, bitWidth: bitWidth) }
        catch let e as ParquetColumnError { throw ParquetColumnError(message: "the \(what) levels: \(e.message)") }
        try check(out, max: max, what: what)
        return out
    }

    /// Appends one data page's levels and values.
    func appendValues(_ bytes: ArraySlice<UInt8>, header: ParquetPageHeader, defs: [Int32], reps: [Int32],
                      dictionary: [JinjaValue]?, into out: inout ParquetColumnData) throws {
        let maxDef = Int32(leaf.maxDef)
        var present = 0
        for d in defs where d == maxDef { present += 1 }
        out.defs += defs
        out.reps += reps
        switch header.encoding {
        case ParquetEncoding.plain.rawValue:
            var q = bytes.startIndex
            try decodePlain(bytes, &q, count: present, into: &out.values)
        case ParquetEncoding.plainDictionary.rawValue, ParquetEncoding.rleDictionary.rawValue:
            guard let dictionary else { throw ParquetColumnError(message: "a dictionary-encoded page comes without a dictionary page") }
            if present == 0 { return }
            guard let width = bytes.first, width <= 32 else { throw ParquetColumnError(message: "a dictionary-encoded page has no valid index bit width") }
            let indices = try RLEHybrid.decode(bytes.dropFirst(), count: present, bitWidth: Int(width))
            out.values.reserveCapacity(out.values.count + present)
            for i in indices {
                guard i >= 0, Int(i) < dictionary.count else {
                    throw ParquetColumnError(message: "dictionary index \(i) is out of range (the dictionary holds \(dictionary.count) values)")
                }
                out.values.append(dictionary[Int(i)])
            }
        case ParquetEncoding.rle.rawValue where leaf.type == .boolean:
            guard bytes.count >= 4 else { throw ParquetColumnError(message: "an RLE boolean page is truncated") }
            let bits = try RLEHybrid.decode(bytes.dropFirst(4), count: present, bitWidth: 1)
            for b in bits { out.values.append(.bool(b != 0)) }
        default:
            throw ParquetColumnError(message: "values in \(ParquetEncoding.name(header.encoding)) are not supported (Loft reads PLAIN and dictionary encodings, pyarrow's defaults); rewrite the file with pyarrow's defaults, e.g. `pq.write_table(pq.read_table(src), dst)`")
        }
    }

    /// PLAIN values.
    func decodePlain(_ b: ArraySlice<UInt8>, _ q: inout Int, count: Int, into values: inout [JinjaValue]) throws {
        func need(_ k: Int) throws {
            guard k >= 0, b.endIndex - q >= k else { throw ParquetColumnError(message: "the values run past the end of the page") }
        }
        func le(_ at: Int, _ n: Int) -> UInt64 {
            var u: UInt64 = 0
            for k in 0..<n { u |= UInt64(b[at + k]) << (8 * UInt64(k)) }
            return u
        }
        values.reserveCapacity(values.count + min(count, b.count + 1))
        switch leaf.type {
        case .boolean:
            try need((count + 7) / 8)
            for i in 0..<count { values.append(.bool((b[q + i / 8] >> UInt8(i % 8)) & 1 == 1)) }
            q += (count + 7) / 8
        case .int32:
            try need(4 * count)
            for _ in 0..<count { values.append(.int(Int(Int32(bitPattern: UInt32(le(q, 4)))))); q += 4 }
        case .int64:
            try need(8 * count)
            for _ in 0..<count { values.append(.int(Int(Int64(bitPattern: le(q, 8))))); q += 8 }
        case .int96:
            try need(12 * count)
            for _ in 0..<count { values.append(.int(Int(Int64(bitPattern: le(q, 8))))); q += 12 }
        case .float:
            try need(4 * count)
            for _ in 0..<count { values.append(.double(Double(Float(bitPattern: UInt32(le(q, 4)))))); q += 4 }
        case .double:
            try need(8 * count)
            for _ in 0..<count { values.append(.double(Double(bitPattern: le(q, 8)))); q += 8 }
        case .byteArray:
            for _ in 0..<count {
                try need(4)
                let n = Int(le(q, 4))
                q += 4
                try need(n)
                values.append(.string(String(decoding: b[q..<(q + n)], as: UTF8.self)))
                q += n
            }
        case .fixedLenByteArray:
            let n = leaf.typeLength
            guard n >= 0 else { throw ParquetColumnError(message: "a fixed-length column has no valid type_length") }
            try need(n * count)
            for _ in 0..<count { values.append(.string(String(decoding: b[q..<(q + n)], as: UTF8.self))); q += n }
        }
    }
}

func bitWidth(_ max: Int) -> Int {
    var w = 0
    while (1 << w) <= max { w += 1 }
    return w
}

/// Parquet's RLE / bit-packing hybrid (levels, dictionary indices, RLE booleans).
enum RLEHybrid {
    static func decode(_ b: ArraySlice<UInt8>, count: Int, bitWidth: Int) throws -> [Int32] {
        guard bitWidth >= 0, bitWidth <= 32 else { throw ParquetColumnError(message: "bit width \(bitWidth) is above 32") }
        var out = [Int32]()
        out.reserveCapacity(count)
        if bitWidth == 0 { return [Int32](repeating: 0, count: count) }
        var q = b.startIndex
        let valueBytes = (bitWidth + 7) / 8
        let mask: UInt64 = bitWidth == 32 ? 0xffff_ffff : (1 << UInt64(bitWidth)) - 1
        while out.count < count {
            // Run header: a ULEB128 varint.
            var header: UInt64 = 0, shift: UInt64 = 0
            while true {
                guard q < b.endIndex, shift < 64 else {
                    throw ParquetColumnError(message: "the encoded data ends after \(out.count) of \(count) values")
                }
                let x = b[q]; q += 1
                header |= UInt64(x & 0x7f) << shift
                if x & 0x80 == 0 { break }
                shift += 7
            }
            if header & 1 == 1 {
                // Bit-packed: (header >> 1) groups of 8 values, least significant bit first.
                let groups = header >> 1
                guard groups > 0, groups <= UInt64(b.endIndex - q) else {
                    throw ParquetColumnError(message: "a bit-packed run of \(groups) groups runs past the data")
                }
                let values = Int(groups) * 8
                let bytes = Int(groups) * bitWidth
                guard b.endIndex - q >= bytes else { throw ParquetColumnError(message: "a bit-packed run is truncated") }
                var bitPos = 0
                for _ in 0..<values {
                    if out.count == count { break }
                    var v: UInt64 = 0
                    var got = 0
                    while got < bitWidth {
                        let byte = UInt64(b[q + (bitPos >> 3)])
                        let off = bitPos & 7
                        let take = min(8 - off, bitWidth - got)
                        v |= ((byte >> UInt64(off)) & ((1 << UInt64(take)) - 1)) << UInt64(got)
                        got += take
                        bitPos += take
                    }
                    out.append(Int32(truncatingIfNeeded: v & mask))
                }
                q += bytes
            } else {
                let run = header >> 1
                guard b.endIndex - q >= valueBytes else { throw ParquetColumnError(message: "an RLE run is truncated") }
                var v: UInt64 = 0
                for k in 0..<valueBytes { v |= UInt64(b[q + k]) << (8 * UInt64(k)) }
                q += valueBytes
                guard run > 0 else { throw ParquetColumnError(message: "an RLE run has length 0") }
                let n = Int(min(run, UInt64(count - out.count)))
                out.append(contentsOf: repeatElement(Int32(truncatingIfNeeded: v & mask), count: n))
            }
        }
        return out
    }
}
