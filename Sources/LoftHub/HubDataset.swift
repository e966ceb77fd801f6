import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Datasets named by a Hugging Face Hub id ("org/name", or "hf://datasets/org/name"):
/// their data files for one config and split, downloaded into the Hugging Face
/// cache layout that `datasets` and huggingface_hub share:
///
///     $HF_HUB_CACHE/datasets--org--name/refs/<revision>
///     $HF_HUB_CACHE/datasets--org--name/snapshots/<commit>/<file>
///
/// The dataset's own Parquet files are preferred (then its JSONL/JSON/CSV files);
/// a dataset without them is read from the Parquet conversion the Hub keeps
/// under the revision refs/convert/parquet (<config>/<split>/NNNN.parquet).
/// HF_TOKEN, HF_ENDPOINT and HF_HUB_OFFLINE work as for models.
public struct HubDataset {
    public var hub: HubModel
    public static let convertedRevision = "refs/convert/parquet"
    static let dataExtensions = ["parquet", "jsonl", "ndjson", "json", "csv", "tsv", "txt"]

    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        hub = HubModel(environment: environment)
    }

    /// Whether `source` names a Hub dataset rather than a local path: "hf://datasets/…",
    /// or "org/name" with nothing of that name on disk and no data-file extension
    /// (a missing "data/train.jsonl" is a missing file, not a Hub id). A local
    /// file or directory always wins.
    public static func isHubID(_ source: String) -> Bool {
        if source.hasPrefix("hf://datasets/") { return true }
        if FileManager.default.fileExists(atPath: source) { return false }
        if source.hasPrefix("/") || source.hasPrefix(".") || source.hasPrefix("~") { return false }
        if source.contains(where: { "*?[".contains($0) }) { return false }
        let parts = source.split(separator: "/", omittingEmptySubsequences: false)
        let allowed = CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "-_."))
        guard parts.count == 2, parts.allSatisfy({ !$0.isEmpty && $0.unicodeScalars.allSatisfy(allowed.contains) }) else { return false }
        var name = parts[1].lowercased()
        if name.hasSuffix(".gz") { name.removeLast(3) }
        return !dataExtensions.contains((name as NSString).pathExtension)
    }

    public static func id(of source: String) -> String {
        source.hasPrefix("hf://datasets/") ? String(source.dropFirst("hf://datasets/".count)) : source
    }

    public func repoDirectory(_ id: String) -> String {
        hub.cacheRoot + "/datasets--" + id.replacingOccurrences(of: "/", with: "--")
    }

    /// The local paths of the data files of `source` for one config and split,
    /// downloading what the cache lacks.
    /// - config: the dataset's config (`name:` in the dataset entry); nil = its only or default one.
    /// - split: default "train".
    /// - dataFiles: patterns (fnmatch, `*` crosses folders) choosing files by path instead.
    public func files(_ source: String, config: String? = nil, split: String? = nil, revision: String? = nil,
                      dataFiles: [String]? = nil) throws -> [String] {
        let id = Self.id(of: source)
        let split = split ?? "train"
        let revision = revision ?? "main"
        if hub.offline {
            if let cached = try cachedFiles(id, config: config, split: split, revision: revision, dataFiles: dataFiles) { return cached }
            throw HubError("\(id): HF_HUB_OFFLINE is set and the cache (\(repoDirectory(id))) has no files of split '\(split)'\(config.map { " of config '\($0)'" } ?? "") at '\(revision)'; unset HF_HUB_OFFLINE to download them, or point `path:` at local files")
        }
        var chosen: (commit: String, revision: String, files: [String])
        do {
            let info = try revisionInfo(id, revision: revision)
            var files = try Self.select(info.files, config: config, split: split, dataFiles: dataFiles, id: id)
            chosen = (info.commit, revision, files)
            if files.isEmpty && dataFiles == nil {
                // No data files of its own (a script or a loader-only repository): the Hub's Parquet conversion.
                if let converted = try? revisionInfo(id, revision: Self.convertedRevision) {
                    files = try Self.select(converted.files, config: config, split: split, dataFiles: nil, id: id)
                    if !files.isEmpty { chosen = (converted.commit, Self.convertedRevision, files) }
                }
            }
            guard !chosen.files.isEmpty else {
                let listed = info.files.filter { Self.isDataFile($0) }.prefix(12)
                throw HubError("\(id) at '\(revision)' has no data files for split '\(split)'\(config.map { " of config '\($0)'" } ?? "")"
                    + (listed.isEmpty ? " (and no data files at all, nor a Parquet conversion)" : "; its data files: \(listed.joined(separator: ", "))")
                    + "; set `split:` (and `name:` for the config) in the dataset entry, or choose files with `data_files: [\"pattern/*.parquet\"]`")
            }
        } catch let error as HubError where error.isNetwork {
            // No network: complete cached files are as good as fresh ones.
            if let cached = try cachedFiles(id, config: config, split: split, revision: revision, dataFiles: dataFiles) { return cached }
            throw error
        }
        let snapshot = repoDirectory(id) + "/snapshots/" + chosen.commit
        var paths: [String] = []
        for file in chosen.files {
            try download(id, commit: chosen.commit, file: file, into: snapshot)
            paths.append(snapshot + "/" + file)
        }
        let ref = repoDirectory(id) + "/refs/" + chosen.revision
        try FileManager.default.createDirectory(atPath: (ref as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try chosen.commit.write(toFile: ref, atomically: true, encoding: .utf8)
        return paths
    }

    /// The files of the cached snapshot a revision points to (its own files first,
    /// then the cached Parquet conversion); nil when the cache has none.
    func cachedFiles(_ id: String, config: String?, split: String, revision: String, dataFiles: [String]?) throws -> [String]? {
        for rev in [revision, Self.convertedRevision] {
            let repo = repoDirectory(id)
            guard let commit = (try? String(contentsOfFile: repo + "/refs/" + rev, encoding: .utf8))?
                .trimmingCharacters(in: .whitespacesAndNewlines), !commit.isEmpty else { continue }
            let snapshot = repo + "/snapshots/" + commit
            var local: [String] = []
            if let e = FileManager.default.enumerator(atPath: snapshot) {
                for case let rel as String in e where !rel.hasSuffix(".incomplete") {
                    var isDir: ObjCBool = false
                    if FileManager.default.fileExists(atPath: snapshot + "/" + rel, isDirectory: &isDir), !isDir.boolValue { local.append(rel) }
                }
            }
            let files = try Self.select(local, config: config, split: split, dataFiles: dataFiles, id: id)
            if !files.isEmpty { return files.map { snapshot + "/" + $0 } }
        }
        return nil
    }

    static func isDataFile(_ path: String) -> Bool {
        var name = path.lowercased()
        if name.hasSuffix(".gz") { name.removeLast(3) }
        return dataExtensions.contains((name as NSString).pathExtension)
    }

    /// The files of one config and split, as `datasets` finds them: a folder
    /// named after the split (or "partial-<split>" in a partial conversion), or a
    /// file name starting with it ("train-00000-of-00002.parquet", "test.jsonl").
    /// Parquet files win over other formats. A repository whose files name no
    /// split at all is all "train".
    static func select(_ files: [String], config: String?, split: String, dataFiles: [String]?, id: String) throws -> [String] {
        if let patterns = dataFiles {
            return files.filter { f in patterns.contains { fnmatch($0, f, 0) == 0 } }.sorted()
        }
        var data = files.filter(isDataFile)
        let parquet = data.filter { $0.lowercased().hasSuffix(".parquet") }
        if !parquet.isEmpty { data = parquet }
        // Configs are top folders when files live in several (the conversion's layout).
        let tops = Set(data.compactMap { $0.contains("/") ? String($0.split(separator: "/")[0]) : nil })
        if let config {
            let inConfig = data.filter { $0.hasPrefix(config + "/") }
            if !inConfig.isEmpty { data = inConfig } else if config != "default" { return [] }
        } else if tops.count > 1 && !tops.contains("data") {
            if tops.contains("default") {
                data = data.filter { $0.hasPrefix("default/") }
            } else if data.allSatisfy({ $0.contains("/") }) && tops.allSatisfy({ t in !knownSplits.contains(t) }) {
                throw HubError("\(id) has several configs (\(tops.sorted().joined(separator: ", "))); choose one with `name:` in the dataset entry")
            }
        }
        func matches(_ f: String, _ s: String) -> Bool {
            let parts = f.lowercased().split(separator: "/").map(String.init)
            let dirs = parts.dropLast()
            let base = parts.last ?? ""
            let s = s.lowercased()
            if dirs.contains(s) || dirs.contains("partial-" + s) { return true }
            for sep in ["-", ".", "_"] where base.hasPrefix(s + sep) { return true }
            return false
        }
        let chosen = data.filter { matches($0, split) }
        if chosen.isEmpty && split.lowercased() == "train" && !data.contains(where: { f in knownSplits.contains { matches(f, $0) } }) {
            return data.sorted()
        }
        return chosen.sorted()
    }

    static let knownSplits = ["train", "test", "validation", "valid", "dev", "eval"]

    /// The commit a dataset revision points to and its file names.
    func revisionInfo(_ id: String, revision: String) throws -> (commit: String, files: [String]) {
        let url = "\(hub.endpoint)/api/datasets/\(id)/revision/\(revision.replacingOccurrences(of: "/", with: "%2F"))"
        let data: Data
        do { data = try hub.request(url, id: id, revision: revision).0 } catch let e as HubError { throw explain(e, id: id, revision: revision) }
        guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any], let sha = json["sha"] as? String,
              let siblings = json["siblings"] as? [[String: Any]] else {
            throw HubError("\(url): the answer is not a dataset description (no sha/siblings); check HF_ENDPOINT")
        }
        return (sha, siblings.compactMap { $0["rfilename"] as? String })
    }

    /// Dataset wording for HTTP failures.
    func explain(_ e: HubError, id: String, revision: String) -> HubError {
        switch e.status {
        case 401?, 403?:
            return HubError("\(id): access denied (HTTP \(e.status!)). The dataset is private or gated: accept its terms at https://huggingface.co/datasets/\(id) and set HF_TOKEN to a token that can read it"
                            + (hub.token == nil ? " (HF_TOKEN is not set)" : " (the HF_TOKEN given cannot)"), status: e.status)
        case 404?:
            return HubError("\(id): no such dataset on the Hub (HTTP 404) at revision '\(revision)'; check the name (org/name) and `revision:`. If it is private, set HF_TOKEN; if you meant a local path, it does not exist (relative paths are resolved against the config's directory)", status: 404)
        default:
            return e
        }
    }

    /// One file into the snapshot unless it is there, resuming a `.incomplete` one.
    func download(_ id: String, commit: String, file: String, into snapshot: String) throws {
        let target = snapshot + "/" + file
        let fm = FileManager.default
        if fm.fileExists(atPath: target) { return }
        try fm.createDirectory(atPath: (target as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let partial = target + ".incomplete"
        if !fm.fileExists(atPath: partial) { _ = fm.createFile(atPath: partial, contents: nil) }
        let have = ((try? fm.attributesOfItem(atPath: partial))?[.size] as? NSNumber)?.int64Value ?? 0
        let escaped = file.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? file
        let url = "\(hub.endpoint)/datasets/\(id)/resolve/\(commit)/\(escaped)"
        do { try hub.stream(url, id: id, revision: commit, to: partial, from: have, name: file) }
        catch let e as HubError { throw explain(e, id: id, revision: commit) }
        try fm.moveItem(atPath: partial, toPath: target)
    }
}
