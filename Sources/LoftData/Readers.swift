import Foundation
import LoftTemplates
#if canImport(CZlib)
import CZlib
#endif

/// One row of a dataset file, before format conversion.
public struct RawRow: Sendable {
    public let file: String
    /// 1-based: the line for JSONL/CSV/TSV/text, the element number for JSON.
    public let row: Int
    public let value: JinjaValue
}

/// The on-disk layouts Loft reads.
public enum FileLayout: String, Sendable {
    case jsonl, json, csv, tsv, text, parquet

    /// From the name (a trailing .gz is ignored); nil when the extension says nothing.
    static func from(path: String) throws -> FileLayout? {
        var name = (path as NSString).lastPathComponent.lowercased()
        if name.hasSuffix(".gz") { name.removeLast(3) }
        let ext = (name as NSString).pathExtension
        switch ext {
        case "jsonl", "ndjson": return .jsonl
        case "json": return .json
        case "csv": return .csv
        case "tsv": return .tsv
        case "txt", "text", "md": return .text
        case "parquet": return .parquet
        case "arrow":
            throw DataError(file: path, "Arrow IPC files (the `datasets` library's cache) are not supported; Loft reads Parquet",
                            fix: "point `path:` at the dataset's Parquet files, or the Hub id (org/name), or convert it: `python -c \"import pyarrow.feather as f, pyarrow.parquet as pq; pq.write_table(f.read_table('\(name)'), '\((name as NSString).deletingPathExtension).parquet')\"`")
        default: return nil
        }
    }

    static let supportedExtensions = ["jsonl", "ndjson", "json", "csv", "tsv", "txt", "text", "md", "parquet"]
}

/// Expands a dataset path: a file, a directory (its supported files, sorted,
/// recursively) or a glob pattern.
public func expandDatasetPath(_ path: String) throws -> [String] {
    let fm = FileManager.default
    if path.contains("*") || path.contains("?") || path.contains("[") {
        var matches: [String] = []
        var g = glob_t()
        defer { globfree(&g) }
        if glob(path, 0, nil, &g) == 0 {
            for i in 0..<Int(g.gl_pathc) {
                if let p = g.gl_pathv[i] { matches.append(String(cString: p)) }
            }
        }
        let files = try matches.sorted().flatMap { try expandDatasetPath($0) }
        guard !files.isEmpty else {
            throw DataError(file: path, "the pattern matches no dataset file", fix: "check the path and the pattern (e.g. data/*.jsonl)")
        }
        return files
    }
    var isDir: ObjCBool = false
    guard fm.fileExists(atPath: path, isDirectory: &isDir) else {
        throw DataError(file: path, "no such file or directory", fix: "check `path:` (relative paths are resolved against the config's directory)")
    }
    guard isDir.boolValue else { return [path] }
    var files: [String] = []
    if let e = fm.enumerator(atPath: path) {
        for case let rel as String in e {
            var name = rel.lowercased()
            if name.hasSuffix(".gz") { name.removeLast(3) }
            let ext = (name as NSString).pathExtension
            if FileLayout.supportedExtensions.contains(ext) || ext == "parquet" {
                files.append((path as NSString).appendingPathComponent(rel))
            }
        }
    }
    files.sort()
    guard !files.isEmpty else {
        throw DataError(file: path, "the directory holds no dataset file (.jsonl, .json, .csv, .tsv, .txt, optionally .gz; .parquet)",
                        fix: "point `path:` at the data files or put them in this directory")
    }
    return files
}

/// Reads bytes through zlib (which reads plain files too), in 1 MiB chunks.
final class ByteSource {
    private var file: gzFile?
    let path: String
    private var chunk = [UInt8](repeating: 0, count: 1 << 20)

    init(path: String) throws {
        self.path = path
        guard let f = gzopen(path, "rb") else {
            throw DataError(file: path, "cannot open the file", fix: "check that it exists and is readable")
        }
        gzbuffer(f, 1 << 18)
        file = f
    }

    deinit { if let file { gzclose(file) } }

    /// Bytes of the file read so far (compressed bytes for gzip).
    var offset: Int64 { file.map { Int64(gzoffset($0)) } ?? 0 }

    /// The next chunk; empty at the end.
    func read() throws -> ArraySlice<UInt8> {
        guard let file else { return [] }
        let n = chunk.withUnsafeMutableBytes { gzread(file, $0.baseAddress, UInt32($0.count)) }
        if n < 0 {
            throw DataError(file: path, "the file cannot be read (corrupt or truncated gzip data?)",
                            fix: "check it with `gzip -t`, or decompress it and point `path:` at the plain file")
        }
        return chunk[0..<Int(n)]
    }

    func readAll() throws -> [UInt8] {
        var all: [UInt8] = []
        while true {
            let c = try read()
            if c.isEmpty { return all }
            all.append(contentsOf: c)
        }
    }
}

/// Lines of a (possibly gzip-compressed) file, read through a buffer: never the whole file.
final class LineReader {
    private let source: ByteSource
    private var buffer: [UInt8] = []
    private var start = 0
    private var eof = false
    private(set) var lineNumber = 0

    init(path: String) throws { source = try ByteSource(path: path) }

    var bytesRead: Int64 { source.offset }

    /// The next line without its terminator (\n or \r\n); nil at the end.
    func next() throws -> ArraySlice<UInt8>? {
        while true {
            if let nl = buffer[start...].firstIndex(of: 10) {
                var line = buffer[start..<nl]
                start = nl + 1
                if line.last == 13 { line = line.dropLast() }
                lineNumber += 1
                return line
            }
            if eof {
                guard start < buffer.count else { return nil }
                var line = buffer[start...]
                start = buffer.count
                if line.last == 13 { line = line.dropLast() }
                lineNumber += 1
                return line
            }
            if start > 0 {
                buffer.removeSubrange(0..<start)
                start = 0
            }
            let c = try source.read()
            if c.isEmpty { eof = true } else { buffer.append(contentsOf: c) }
        }
    }
}

/// Rows of one file, as a stream. A row that cannot be parsed comes back as a
/// failure so the caller can count it and go on (`skipBadRows`).
public final class RowReader {
    public let path: String
    public let layout: FileLayout
    private var lines: LineReader?
    private var parquet: ParquetRowSource?
    private var buffered: [Result<RawRow, DataError>] = []
    private var bufferedIndex = 0
    private var csvHeader: [String]?

    public init(path: String) throws {
        self.path = path
        if let l = try FileLayout.from(path: path) {
            layout = l
        } else {
            // Sniff: a JSON array or object, or JSON lines, or text.
            let src = try ByteSource(path: path)
            let head = try src.read()
            let first = head.first { ![32, 9, 10, 13].contains($0) }
            if head.starts(with: Array("PAR1".utf8)) { layout = .parquet }
            else if first == UInt8(ascii: "[") { layout = .json }
            else if first == UInt8(ascii: "{") { layout = .jsonl }
            else {
                throw DataError(file: path, "unknown file type",
                                fix: "name it .jsonl, .json, .csv, .tsv or .txt (optionally .gz) so Loft knows how to read it")
            }
        }
        switch layout {
        case .jsonl, .text, .csv, .tsv: lines = try LineReader(path: path)
        case .json: try loadJSON()
        case .parquet: parquet = try ParquetRowSource(path: path)
        }
    }

    private func loadJSON() throws {
        let bytes = try ByteSource(path: path).readAll()
        guard let text = String(bytes: bytes, encoding: .utf8) else {
            throw DataError(file: path, "the file is not valid UTF-8", fix: "re-encode it as UTF-8 (e.g. `iconv -t UTF-8`)")
        }
        let value: JinjaValue
        do {
            value = try JSONReader.parse(text)
        } catch let e as JSONReader.ParseError {
            // A .json file that is really JSON lines.
            let trimmed = text.drop { $0.isWhitespace }
            if trimmed.first == "{", text.contains("\n") {
                lines = try LineReader(path: path)
                return
            }
            throw DataError(file: path, row: nil, "invalid JSON at line \(e.line), column \(e.column): \(e.message)",
                            fix: "fix the JSON there; a file with one JSON object per line should be named .jsonl")
        }
        switch value {
        case .array(let items):
            buffered = items.enumerated().map { .success(RawRow(file: path, row: $0.offset + 1, value: $0.element)) }
        case .object(let o):
            let arrays = o.pairs.compactMap { $0.1.arrayValue }
            if !arrays.isEmpty && arrays.count == o.count {
                // An object of arrays (e.g. {"train": [...]}): the rows of each, in order.
                var n = 0
                for a in arrays { for v in a { n += 1; buffered.append(.success(RawRow(file: path, row: n, value: v))) } }
            } else {
                buffered = [.success(RawRow(file: path, row: 1, value: value))]
            }
        default:
            throw DataError(file: path, "the JSON holds a \(typeName(value)), not a list of rows",
                            fix: "make the top level an array of objects ([{...}, {...}]) or use JSON lines")
        }
    }

    /// The next row, a failure for a row that cannot be read, or nil at the end.
    /// Throws only for problems with the whole file.
    /// Bytes of the file read so far (for progress).
    public var bytesRead: Int64 {
        if let lines { return lines.bytesRead }
        if let parquet { return parquet.bytesRead }
        return TokenCache.fileSize(path)
    }

    /// Only these rows (0-based, counting every row the file holds): a
    /// dataset's `split: train[:250]`. Nil reads them all.
    public var rows: Range<Int>?
    private var rowIndex = 0

    public func next() throws -> Result<RawRow, DataError>? {
        guard let rows else { return try nextRow() }
        while rowIndex < rows.lowerBound {
            guard try nextRow() != nil else { return nil }
            rowIndex += 1
        }
        guard rowIndex < rows.upperBound, let row = try nextRow() else { return nil }
        rowIndex += 1
        return row
    }

    private func nextRow() throws -> Result<RawRow, DataError>? {
        if let parquet { return try parquet.next().map { .success($0) } }
        if let lines {
            switch layout {
            case .csv, .tsv: return try nextCSV(lines, separator: layout == .tsv ? 9 : UInt8(ascii: ","))
            default: break
            }
            while let line = try lines.next() {
                let n = lines.lineNumber
                if line.allSatisfy({ [32, 9, 13].contains($0) }) { continue }
                guard let s = String(bytes: line, encoding: .utf8) else {
                    return .failure(DataError(file: path, row: n, "the line is not valid UTF-8", fix: "re-encode the file as UTF-8 or remove the row", reason: .unreadable))
                }
                if layout == .text { return .success(RawRow(file: path, row: n, value: .object(JinjaObject([("text", .string(s))])))) }
                do {
                    return .success(RawRow(file: path, row: n, value: try JSONReader.parse(s)))
                } catch let e as JSONReader.ParseError {
                    return .failure(DataError(file: path, row: n, "invalid JSON at column \(e.column): \(e.message)",
                                              fix: "each line of a JSONL file must be one complete JSON object; fix or remove this line", reason: .unreadable))
                } catch {
                    return .failure(DataError(file: path, row: n, "invalid JSON: \(error)", fix: "fix or remove this line", reason: .unreadable))
                }
            }
            return nil
        }
        guard bufferedIndex < buffered.count else { return nil }
        defer { bufferedIndex += 1 }
        return buffered[bufferedIndex]
    }

    /// One CSV record (quoted fields may span lines), keyed by the header.
    private func nextCSV(_ lines: LineReader, separator: UInt8) throws -> Result<RawRow, DataError>? {
        while true {
            guard var record = try lines.next() else { return nil }
            let firstLine = lines.lineNumber
            if record.isEmpty { continue }
            var fields: [[UInt8]] = []
            var field: [UInt8] = []
            var inQuotes = false
            var i = record.startIndex
            while true {
                if i == record.endIndex {
                    if inQuotes, let more = try lines.next() {
                        field.append(10)
                        record = more
                        i = record.startIndex
                        continue
                    }
                    break
                }
                let b = record[i]
                if inQuotes {
                    if b == UInt8(ascii: "\"") {
                        if record.index(after: i) < record.endIndex && record[record.index(after: i)] == UInt8(ascii: "\"") {
                            field.append(b); i = record.index(after: i)
                        } else { inQuotes = false }
                    } else { field.append(b) }
                } else if b == UInt8(ascii: "\"") && field.isEmpty && separator != 9 {
                    inQuotes = true
                } else if b == separator {
                    fields.append(field); field = []
                } else { field.append(b) }
                i = record.index(after: i)
            }
            fields.append(field)
            var strings: [String] = []
            for f in fields {
                guard let s = String(bytes: f, encoding: .utf8) else {
                    return .failure(DataError(file: path, row: firstLine, "the record is not valid UTF-8", fix: "re-encode the file as UTF-8", reason: .unreadable))
                }
                strings.append(s)
            }
            guard let header = csvHeader else {
                csvHeader = strings.map { $0.trimmingCharacters(in: .whitespaces) }
                continue
            }
            if strings.count != header.count {
                return .failure(DataError(file: path, row: firstLine, "has \(strings.count) columns, the header has \(header.count)",
                                          fix: "quote fields that contain the separator or line breaks (\"…\"), or fix the row", reason: .unreadable))
            }
            var o = JinjaObject()
            for (k, v) in zip(header, strings) { o[k] = .string(v) }
            return .success(RawRow(file: path, row: firstLine, value: .object(o)))
        }
    }
}

func typeName(_ v: JinjaValue) -> String {
    switch v {
    case .null: return "null"
    case .bool: return "boolean"
    case .int, .double: return "number"
    case .string: return "string"
    case .array: return "list"
    case .object: return "object"
    }
}
