import Foundation
import LoftTemplates

/// The schema as rows see it: lists (3-level LIST groups and legacy repeated
/// fields), maps, structs and leaves, with the definition/repetition levels at
/// which each is present.
indirect enum ParquetNode {
    /// `def`: the definition level at which the node is non-null.
    case leaf(column: Int, def: Int, optional: Bool)
    case group(fields: [(String, ParquetNode)], def: Int, optional: Bool)
    /// Elements exist at definition level `def + 1`; a new element repeats at `rep`.
    case list(element: ParquetNode, def: Int, rep: Int, optional: Bool, isMap: Bool)

    var def: Int {
        switch self {
        case .leaf(_, let d, _), .group(_, let d, _), .list(_, let d, _, _, _): return d
        }
    }
    var optional: Bool {
        switch self {
        case .leaf(_, _, let o), .group(_, _, let o), .list(_, _, _, let o, _): return o
        }
    }
}

/// Reads a Parquet file a row group at a time (a file larger than memory
/// streams) and gives each row as the JSON-like value a JSONL line would parse
/// to: columns become keys, list<struct<role, content>> a list of objects.
///
/// Its own code, after the format's specification: the footer's Thrift compact
/// metadata, data pages v1 and v2, PLAIN and dictionary encodings, the
/// RLE/bit-packed hybrid, definition and repetition levels, and UNCOMPRESSED,
/// SNAPPY, GZIP and ZSTD pages.
public final class ParquetFile {
    public let path: String
    let handle: FileHandle
    let fileSize: Int64
    let metadata: ParquetFileMetadata
    let root: [(String, ParquetNode)]
    let leaves: [ParquetLeaf]
    public var numRows: Int64 { metadata.numRows }
    public var rowGroupCount: Int { metadata.rowGroups.count }
    public var columnNames: [String] { root.map(\.0) }

    public init(path: String) throws {
        self.path = path
        guard let h = FileHandle(forReadingAtPath: path) else {
            throw DataError(file: path, "cannot open the file", fix: "check that it exists and is readable")
        }
        handle = h
        let size = ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.int64Value ?? 0
        fileSize = size
        func fail(_ m: String) -> DataError {
            DataError(file: path, "not a readable Parquet file: \(m)", fix: "check that the file is complete (re-download or re-export it); pyarrow can test it with `pq.read_table(path)`")
        }
        guard size >= 12 else { throw fail("it is \(size) bytes long, shorter than Parquet's header and footer") }
        let head = try Self.read(h, at: 0, count: 4)
        let tail = try Self.read(h, at: size - 8, count: 8)
        guard head == Array("PAR1".utf8) else {
            throw fail("it does not start with the Parquet magic PAR1" + (head == Array("PARE".utf8) ? " (it is encrypted, which Loft does not read)" : ""))
        }
        guard Array(tail[4...]) == Array("PAR1".utf8) else { throw fail("it does not end with the Parquet magic PAR1 (truncated?)") }
        let footerLength = Int64(tail[0]) | Int64(tail[1]) << 8 | Int64(tail[2]) << 16 | Int64(tail[3]) << 24
        guard footerLength > 0, footerLength <= size - 12 else {
            throw fail("the footer length \(footerLength) points past the start of the file (\(size) bytes)")
        }
        let footer = try Self.read(h, at: size - 8 - footerLength, count: Int(footerLength))
        let metadata: ParquetFileMetadata
        do {
            var t = ThriftCompactReader(footer)
            metadata = try ParquetFileMetadata(t.readStruct())
        } catch let e as ThriftError {
            throw fail("the footer metadata is corrupt (\(e.message))")
        }
        self.metadata = metadata
        // The schema tree: element 0 is the root; children follow depth first.
        var index = 1
        var leaves: [ParquetLeaf] = []
        func build(parentDef: Int, parentRep: Int, path: [String], forceRequired: Bool) throws -> (String, ParquetNode) {
            guard index < metadata.schema.count else { throw fail("the schema has fewer elements than its groups' child counts") }
            guard path.count < 32 else { throw fail("the schema nests deeper than 32 levels") }
            let e = metadata.schema[index]
            index += 1
            let repetition = forceRequired ? .required : e.repetition
            if repetition == .repeated {
                // A legacy list: the repeated field itself is the element.
                index -= 1
                let element = try build(parentDef: parentDef + 1, parentRep: parentRep + 1, path: path, forceRequired: true)
                return (e.name, .list(element: element.1, def: parentDef, rep: parentRep + 1, optional: false, isMap: false))
            }
            let optional = repetition == .optional
            let def = parentDef + (optional ? 1 : 0)
            let myPath = path + [e.name]
            if e.numChildren == 0 {
                guard let type = e.type else {
                    throw fail("column \(myPath.joined(separator: ".")) has physical type \(e.rawType.map(String.init) ?? "none"), which is not a Parquet type")
                }
                leaves.append(ParquetLeaf(path: myPath.joined(separator: "."), type: type, typeLength: e.typeLength ?? -1,
                                          maxDef: def, maxRep: parentRep, isText: true))
                return (e.name, .leaf(column: leaves.count - 1, def: def, optional: optional))
            }
            guard e.numChildren > 0, e.numChildren < metadata.schema.count else { throw fail("group \(e.name) has \(e.numChildren) children") }
            if e.isList || e.isMap, e.numChildren == 1, index < metadata.schema.count, metadata.schema[index].repetition == .repeated {
                let middle = metadata.schema[index]
                let rep = parentRep + 1
                let elementDef = def + 1
                let element: ParquetNode
                if !e.isMap && middle.numChildren == 1 && middle.name != "array" && middle.name != e.name + "_tuple" {
                    // Three levels: the repeated middle group is only the list's structure.
                    index += 1
                    element = try build(parentDef: elementDef, parentRep: rep, path: myPath + [middle.name], forceRequired: false).1
                } else {
                    // The repeated group is the element itself (a map's key_value, a two-level list).
                    element = try build(parentDef: elementDef, parentRep: rep, path: myPath, forceRequired: true).1
                }
                return (e.name, .list(element: element, def: def, rep: rep, optional: optional, isMap: e.isMap))
            }
            var fields: [(String, ParquetNode)] = []
            for _ in 0..<e.numChildren { fields.append(try build(parentDef: def, parentRep: parentRep, path: myPath, forceRequired: false)) }
            return (e.name, .group(fields: fields, def: def, optional: optional))
        }
        var root: [(String, ParquetNode)] = []
        let rootChildren = metadata.schema[0].numChildren
        guard rootChildren > 0 else { throw fail("the schema has no columns") }
        for _ in 0..<rootChildren { root.append(try build(parentDef: 0, parentRep: 0, path: [], forceRequired: false)) }
        self.root = root
        self.leaves = leaves
        for (g, group) in metadata.rowGroups.enumerated() where group.columns.count != leaves.count {
            throw fail("row group \(g) has \(group.columns.count) column chunks, the schema \(leaves.count) columns")
        }
    }

    deinit { try? handle.close() }

    static func read(_ h: FileHandle, at offset: Int64, count: Int) throws -> [UInt8] {
        try h.seek(toOffset: UInt64(offset))
        let d = try h.read(upToCount: count) ?? Data()
        return [UInt8](d)
    }

    /// The rows of one row group.
    public func rows(ofRowGroup g: Int) throws -> [JinjaValue] {
        let group = metadata.rowGroups[g]
        var columns: [ParquetColumnData] = []
        for (c, chunk) in group.columns.enumerated() {
            let leaf = leaves[c]
            func fail(_ m: String) -> DataError {
                DataError(file: path, field: leaf.path, "row group \(g): \(m)",
                          fix: "the file is corrupt or truncated: re-download or re-export it (pyarrow can test it with `pq.read_table(path)`)")
            }
            if let external = chunk.filePath, !external.isEmpty {
                throw DataError(file: path, field: leaf.path, "the column's data lives in another file (\(external))", fix: "merge the dataset into one Parquet file")
            }
            let start = chunk.start, size = chunk.totalCompressedSize
            guard start >= 4, size >= 0, start <= fileSize, size <= fileSize, start + size <= fileSize - 8 else {
                throw fail("the column chunk (bytes \(start)…\(start + size)) lies outside the file's \(fileSize) bytes")
            }
            guard size <= Int64(Int32.max) else { throw fail("a column chunk of \(size) bytes is larger than Loft reads (2 GB)") }
            let bytes = try Self.read(handle, at: start, count: Int(size))
            guard bytes.count == Int(size) else { throw fail("the file ends inside the column chunk") }
            guard chunk.numValues >= 0, chunk.numValues <= Int64(Int32.max) else { throw fail("the chunk claims \(chunk.numValues) values") }
            do {
                columns.append(try ParquetColumnDecoder(leaf: leaf, codec: chunk.codec).decode(chunk: bytes, expectedValues: Int(chunk.numValues)))
            } catch let e as ParquetColumnError {
                throw fail(e.message)
            }
        }
        var rows: [JinjaValue] = []
        rows.reserveCapacity(Int(max(0, min(group.numRows, Int64(columns.first?.defs.count ?? 0)))))
        var assembler = RecordAssembler(columns: columns, leaves: leaves)
        do {
            for _ in 0..<max(0, group.numRows) {
                var o = JinjaObject()
                for (name, node) in root { o[name] = try assembler.assemble(node, nested: false) }
                rows.append(.object(o))
            }
        } catch let e as RecordAssembler.Failure {
            throw DataError(file: path, row: rows.count + 1, field: leaves[e.column].path, "row group \(g): \(e.message)",
                            fix: "the file is corrupt: its levels and row counts disagree; re-export it")
        }
        return rows
    }
}

extension ParquetNode {
    func firstLeaf() -> Int {
        switch self {
        case .leaf(let c, _, _): return c
        case .group(let f, _, _): return f.first?.1.firstLeaf() ?? 0
        case .list(let e, _, _, _, _): return e.firstLeaf()
        }
    }

    func leafColumns(into out: inout [Int]) {
        switch self {
        case .leaf(let c, _, _): out.append(c)
        case .group(let f, _, _): for (_, n) in f { n.leafColumns(into: &out) }
        case .list(let e, _, _, _, _): e.leafColumns(into: &out)
        }
    }
}

/// Rebuilds nested values from the columns' levels (the Dremel record assembly,
/// done recursively over the schema with one cursor per leaf column).
struct RecordAssembler {
    var columns: [ParquetColumnData]
    let leaves: [ParquetLeaf]

    struct Failure: Error { let column: Int; let message: String }

    mutating func peek(_ c: Int) throws -> (def: Int32, rep: Int32) {
        let col = columns[c]
        guard col.position < col.defs.count, col.position < col.reps.count else {
            throw Failure(column: c, message: "the column ends before the row group's last row")
        }
        return (col.defs[col.position], col.reps[col.position])
    }

    /// A null or empty node: one entry in each leaf below it.
    mutating func skip(_ node: ParquetNode) throws {
        var cs: [Int] = []
        node.leafColumns(into: &cs)
        for c in cs {
            _ = try peek(c)
            columns[c].position += 1
        }
    }

    mutating func assemble(_ node: ParquetNode, nested: Bool) throws -> JinjaValue {
        let c = node.firstLeaf()
        let d = Int(try peek(c).def)
        if node.optional && d < node.def {
            try skip(node)
            return .null
        }
        switch node {
        case .leaf(let c, _, _):
            columns[c].position += 1
            guard d >= leaves[c].maxDef else { return .null }
            let k = columns[c].valuePosition
            guard k < columns[c].values.count else { throw Failure(column: c, message: "the column has fewer values than its levels say") }
            columns[c].valuePosition += 1
            return columns[c].values[k]
        case .group(let fields, _, _):
            var o = JinjaObject()
            for (name, child) in fields {
                let v = try assemble(child, nested: true)
                // Nested structs drop null fields: a JSONL message without a key and
                // its Parquet twin (where the column holds null) then read the same.
                if nested && v == .null { continue }
                o[name] = v
            }
            return .object(o)
        case .list(let element, let def, let rep, _, let isMap):
            if d < def + 1 {
                try skip(node)
                return isMap ? .object(JinjaObject()) : .array([])
            }
            var items: [JinjaValue] = []
            while true {
                items.append(try assemble(element, nested: true))
                let col = columns[c]
                guard col.position < col.reps.count, Int(col.reps[col.position]) >= rep else { break }
                if Int(col.reps[col.position]) > rep {
                    throw Failure(column: c, message: "a repetition level \(col.reps[col.position]) is deeper than the schema allows here")
                }
            }
            if isMap {
                var o = JinjaObject()
                for item in items {
                    guard case .object(let kv) = item, let key = kv["key"] else { continue }
                    o[key.stringValue ?? key.jsonText()] = kv["value"] ?? .null
                }
                return .object(o)
            }
            return .array(items)
        }
    }
}

/// Rows of a Parquet file for `RowReader`, one row group in memory at a time.
final class ParquetRowSource {
    let file: ParquetFile
    private var group = 0
    private var rows: [JinjaValue] = []
    private var index = 0
    private var rowNumber = 0

    init(path: String) throws { file = try ParquetFile(path: path) }

    /// The file's size times the share of row groups read.
    var bytesRead: Int64 { file.rowGroupCount == 0 ? file.fileSize : file.fileSize * Int64(group) / Int64(file.rowGroupCount) }

    func next() throws -> RawRow? {
        while index >= rows.count {
            guard group < file.rowGroupCount else { return nil }
            rows = try file.rows(ofRowGroup: group)
            index = 0
            group += 1
        }
        defer { index += 1 }
        rowNumber += 1
        return RawRow(file: file.path, row: rowNumber, value: rows[index])
    }
}
