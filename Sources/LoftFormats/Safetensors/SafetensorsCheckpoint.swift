import Foundation

/// A model's weights as Hugging Face saves them: a single `model.safetensors`, or
/// shards listed by `model.safetensors.index.json` (`{"metadata": {...},
/// "weight_map": {tensor name: shard file}}`). Every shard is mapped and checked
/// on open; tensor bytes stay on disk until read.
public final class SafetensorsCheckpoint: @unchecked Sendable {
    /// The directory (or the single file) the checkpoint was opened from.
    public let path: String
    /// The shards, in the order of their file names.
    public let shards: [SafetensorsFile]
    /// The index's "metadata" object (e.g. total_size), empty without an index.
    public let indexMetadata: JSONObject
    private let location: [String: Int]

    /// Opens `path`: a directory holding `model.safetensors.index.json` or
    /// `model.safetensors` (or exactly one `*.safetensors`), an index file, or a
    /// single .safetensors file.
    public convenience init(path: String) throws {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: path, isDirectory: &isDir) else {
            throw FormatError(path, "not found; expected a model directory or a .safetensors file")
        }
        if !isDir.boolValue {
            if path.hasSuffix(".json") {
                try self.init(index: path)
            } else {
                let f = try SafetensorsFile(path: path)
                self.init(shards: [f], metadata: JSONObject(), path: path)
            }
            return
        }
        let dir = URL(fileURLWithPath: path)
        let index = dir.appendingPathComponent("model.safetensors.index.json").path
        if fm.fileExists(atPath: index) {
            try self.init(index: index)
            return
        }
        let single = dir.appendingPathComponent("model.safetensors").path
        if fm.fileExists(atPath: single) {
            self.init(shards: [try SafetensorsFile(path: single)], metadata: JSONObject(), path: path)
            return
        }
        let candidates = ((try? fm.contentsOfDirectory(atPath: path)) ?? []).filter { $0.hasSuffix(".safetensors") }.sorted()
        let indexes = ((try? fm.contentsOfDirectory(atPath: path)) ?? []).filter { $0.hasSuffix(".safetensors.index.json") }.sorted()
        if indexes.count == 1 {
            try self.init(index: dir.appendingPathComponent(indexes[0]).path)
            return
        }
        guard candidates.count == 1 else {
            throw FormatError(path, candidates.isEmpty
                ? "no model.safetensors or model.safetensors.index.json in this directory"
                : "\(candidates.count) .safetensors files but no model.safetensors.index.json to say which tensor is where; add the index or open one file")
        }
        self.init(shards: [try SafetensorsFile(path: dir.appendingPathComponent(candidates[0]).path)], metadata: JSONObject(), path: path)
    }

    private init(shards: [SafetensorsFile], metadata: JSONObject, path: String, location: [String: Int]? = nil) {
        self.shards = shards
        self.indexMetadata = metadata
        self.path = path
        if let location {
            self.location = location
        } else {
            var l: [String: Int] = [:]
            for (i, s) in shards.enumerated() { for t in s.tensors { l[t.name] = i } }
            self.location = l
        }
    }

    private convenience init(index: String) throws {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: index)) } catch {
            throw FormatError(index, "cannot read: \(error.localizedDescription)")
        }
        let json: JSONValue
        do { json = try JSONParser.parse(data) } catch let e as JSONParser.Error {
            throw FormatError(index, "malformed JSON: \(e)")
        }
        guard let root = json.object else { throw FormatError(index, "expected a JSON object with \"weight_map\"") }
        guard let map = root["weight_map"]?.object else {
            throw FormatError(index, "\"weight_map\" is missing or not an object of tensor name → shard file")
        }
        let dir = URL(fileURLWithPath: index).deletingLastPathComponent()
        var shardNames: [String] = []
        for name in map.keys {
            guard let shard = map[name]!.string else { throw FormatError(index, "weight_map[\"\(name)\"] is \(map[name]!.kind), expected a file name") }
            guard !shard.contains("/"), shard != "..", !shard.isEmpty else {
                throw FormatError(index, "weight_map[\"\(name)\"] = \"\(shard)\": shard names must be plain file names in the checkpoint directory")
            }
            shardNames.append(shard)
        }
        let unique = Array(Set(shardNames)).sorted()
        var files: [SafetensorsFile] = []
        var shardIndex: [String: Int] = [:]
        for s in unique {
            let p = dir.appendingPathComponent(s).path
            guard FileManager.default.fileExists(atPath: p) else {
                throw FormatError(index, "lists shard \(s), which is missing from \(dir.path); download it")
            }
            shardIndex[s] = files.count
            files.append(try SafetensorsFile(path: p))
        }
        var location: [String: Int] = [:]
        for name in map.keys {
            let s = shardIndex[map[name]!.string!]!
            guard files[s].info(named: name) != nil else {
                throw FormatError(index, "says \(name) is in \(map[name]!.string!), but that shard has no such tensor; the index and the shards disagree")
            }
            location[name] = s
        }
        self.init(shards: files, metadata: root["metadata"]?.object ?? JSONObject(), path: index, location: location)
    }

    /// All tensor names, sorted.
    public var tensorNames: [String] { location.keys.sorted() }

    /// The shard holding `name`, if any.
    public func shard(for name: String) -> SafetensorsFile? { location[name].map { shards[$0] } }

    public func info(named name: String) -> SafetensorsTensorInfo? { shard(for: name)?.info(named: name) }

    public func tensor(named name: String) -> SafetensorsTensor? { shard(for: name)?.tensor(named: name) }

    public func require(_ name: String) throws -> SafetensorsTensor {
        guard let t = tensor(named: name) else {
            throw FormatError(path, "no tensor named \(name) in this checkpoint (\(location.count) tensors)")
        }
        return t
    }

    public func floats(named name: String) throws -> [Float] { try require(name).floats() }

    /// Every shard's `__metadata__`, merged (the first shard wins on a clash).
    public var metadata: [String: String] {
        var m: [String: String] = [:]
        for s in shards { m.merge(s.metadata) { a, _ in a } }
        return m
    }
}
