import Foundation
#if canImport(CZlib)
import CZlib
#endif
#if canImport(CZstd)
import CZstd
#endif

struct DecompressionError: Error { let message: String }

/// Decompresses a Parquet page body into exactly `size` bytes: a page whose
/// data decompresses to more or fewer bytes than its header says is corrupt.
enum ParquetDecompressor {
    static func decompress(_ input: ArraySlice<UInt8>, codec: Int64, size: Int) throws -> [UInt8] {
        // A header that lies about the size must not make us allocate it: no codec
        // here expands more than deflate's ~1032:1 (snappy ~22:1; zstd's own frame
        // header is checked below).
        guard size <= 1 << 30, size <= 1100 * input.count + 4096 else {
            throw DecompressionError(message: "the page header says \(size) bytes uncompressed from \(input.count) compressed, more than any codec expands")
        }
        switch ParquetCodec(rawValue: codec) {
        case .uncompressed?:
            guard input.count == size else {
                throw DecompressionError(message: "an uncompressed page holds \(input.count) bytes, its header says \(size)")
            }
            return Array(input)
        case .snappy?:
            return try Snappy.decompress(input, expected: size)
        case .gzip?:
            return try inflate(input, expected: size)
        case .zstd?:
            return try zstd(input, expected: size)
        case let other?:
            throw DecompressionError(message: "\(other.name) compression is not supported (Loft reads UNCOMPRESSED, SNAPPY, GZIP and ZSTD)")
        case nil:
            throw DecompressionError(message: "unknown compression codec \(codec)")
        }
    }

    /// GZIP pages: a gzip stream (zlib's automatic header detection also takes raw zlib).
    static func inflate(_ input: ArraySlice<UInt8>, expected: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: expected)
        if expected == 0 && input.isEmpty { return out }
        var stream = z_stream()
        guard inflateInit2_(&stream, 15 + 32, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw DecompressionError(message: "zlib could not start")
        }
        defer { inflateEnd(&stream) }
        var input = Array(input)
        var status: Int32 = Z_OK
        var spare: UInt8 = 0
        input.withUnsafeMutableBufferPointer { inp in
            out.withUnsafeMutableBufferPointer { o in
                stream.next_in = inp.baseAddress
                stream.avail_in = UInt32(inp.count)
                stream.next_out = o.baseAddress
                stream.avail_out = UInt32(o.count)
                status = CZlib.inflate(&stream, Z_FINISH)
                if status == Z_BUF_ERROR && stream.avail_out == 0 {
                    // The output is full: is there more than the header said?
                    withUnsafeMutablePointer(to: &spare) { p in
                        stream.next_out = p
                        stream.avail_out = 1
                        status = CZlib.inflate(&stream, Z_FINISH)
                        if stream.avail_out == 0 { status = Z_DATA_ERROR }
                    }
                }
            }
        }
        guard status == Z_STREAM_END, Int(stream.total_out) == expected else {
            throw DecompressionError(message: "the GZIP data is corrupt or does not decompress to the \(expected) bytes its header says (got \(stream.total_out), zlib status \(status))")
        }
        return out
    }

    static func zstd(_ input: ArraySlice<UInt8>, expected: Int) throws -> [UInt8] {
        let framed = input.withUnsafeBytes { ZSTD_getFrameContentSize($0.baseAddress, $0.count) }
        if framed != UInt64.max /* ZSTD_CONTENTSIZE_UNKNOWN */ && framed != UInt64(expected) {
            throw DecompressionError(message: framed == UInt64.max - 1 /* ZSTD_CONTENTSIZE_ERROR */ ? "the ZSTD data is corrupt (no valid frame header)"
                                     : "the ZSTD frame says \(framed) bytes, the page header says \(expected)")
        }
        var out = [UInt8](repeating: 0, count: expected)
        let n = input.withUnsafeBytes { inp in
            out.withUnsafeMutableBytes { o in ZSTD_decompress(o.baseAddress, o.count, inp.baseAddress, inp.count) }
        }
        if ZSTD_isError(n) != 0 {
            throw DecompressionError(message: "the ZSTD data is corrupt: \(String(cString: ZSTD_getErrorName(n)))")
        }
        guard n == expected else {
            throw DecompressionError(message: "the ZSTD data decompresses to \(n) bytes, the page header says \(expected)")
        }
        return out
    }
}

/// Snappy's raw format (what Parquet's SNAPPY pages hold; no framing):
/// https://github.com/google/snappy/blob/main/format_description.txt
enum Snappy {
    static func decompress(_ input: ArraySlice<UInt8>, expected: Int) throws -> [UInt8] {
        var p = input.startIndex
        let end = input.endIndex
        // The preamble: the uncompressed length as a varint.
        var length: UInt64 = 0, shift: UInt64 = 0
        while true {
            guard p < end, shift < 35 else { throw DecompressionError(message: "the SNAPPY data has no valid length") }
            let b = input[p]; p += 1
            length |= UInt64(b & 0x7f) << shift
            if b & 0x80 == 0 { break }
            shift += 7
        }
        guard length == UInt64(expected), expected <= 32 * input.count + 64 else {
            throw DecompressionError(message: "the SNAPPY data says \(length) bytes, the page header says \(expected)")
        }
        var out = [UInt8](repeating: 0, count: expected)
        var o = 0
        try out.withUnsafeMutableBufferPointer { dst in
            try input.withUnsafeBufferPointer { src0 in
                let src = UnsafeBufferPointer(rebasing: src0[(p - input.startIndex)...])
                var i = 0
                let n = src.count
                func need(_ k: Int) throws { guard n - i >= k else { throw DecompressionError(message: "the SNAPPY data is truncated") } }
                while i < n {
                    let tag = src[i]; i += 1
                    switch tag & 3 {
                    case 0:
                        var len = Int(tag >> 2)
                        if len >= 60 {
                            let extra = len - 59
                            try need(extra)
                            len = 0
                            for k in 0..<extra { len |= Int(src[i + k]) << (8 * k) }
                            i += extra
                        }
                        len += 1
                        try need(len)
                        guard expected - o >= len else { throw DecompressionError(message: "the SNAPPY data overflows its stated length") }
                        for k in 0..<len { dst[o + k] = src[i + k] }
                        i += len; o += len
                    default:
                        var len: Int, offset: Int
                        switch tag & 3 {
                        case 1:
                            try need(1)
                            len = 4 + Int((tag >> 2) & 7)
                            offset = (Int(tag >> 5) << 8) | Int(src[i]); i += 1
                        case 2:
                            try need(2)
                            len = 1 + Int(tag >> 2)
                            offset = Int(src[i]) | Int(src[i + 1]) << 8; i += 2
                        default:
                            try need(4)
                            len = 1 + Int(tag >> 2)
                            offset = Int(src[i]) | Int(src[i + 1]) << 8 | Int(src[i + 2]) << 16 | Int(src[i + 3]) << 24; i += 4
                        }
                        guard offset > 0, offset <= o else { throw DecompressionError(message: "the SNAPPY data copies from before its start") }
                        guard expected - o >= len else { throw DecompressionError(message: "the SNAPPY data overflows its stated length") }
                        // Byte by byte: a copy may overlap what it writes (runs).
                        for k in 0..<len { dst[o + k] = dst[o + k - offset] }
                        o += len
                    }
                }
            }
        }
        guard o == expected else { throw DecompressionError(message: "the SNAPPY data holds \(o) of its \(expected) bytes") }
        return out
    }
}
