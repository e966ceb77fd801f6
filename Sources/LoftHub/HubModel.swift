import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Models named by a Hugging Face Hub id ("HuggingFaceTB/SmolLM2-135M-Instruct"),
/// downloaded into the Hugging Face cache layout that transformers and
/// huggingface_hub use, so each reuses what the other fetched:
///
///     $HF_HUB_CACHE (or $HF_HOME/hub, or ~/.cache/huggingface/hub)
///       models--org--name/refs/<revision>          the commit the revision points to
///       models--org--name/snapshots/<commit>/<file>
///
/// Environment: HF_TOKEN (sent as a bearer token), HF_ENDPOINT (default
/// https://huggingface.co), HF_HUB_OFFLINE=1 (use the cache only).
public struct HubModel {
    /// The files a model directory needs; weights come from the safetensors
    /// index's shards, or model.safetensors.
    public static let modelFiles = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                                    "special_tokens_map.json", "tokenizer.model", "chat_template.jinja"]

    public var endpoint: String
    public var cacheRoot: String
    public var token: String?
    public var offline: Bool
    /// Called with (file, bytes done, total bytes or nil) as a download proceeds.
    public var progress: ((String, Int64, Int64?) -> Void)?

    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        endpoint = (environment["HF_ENDPOINT"].flatMap { $0.isEmpty ? nil : $0 } ?? "https://huggingface.co")
        while endpoint.hasSuffix("/") { endpoint.removeLast() }
        let home = environment["HF_HOME"].flatMap { $0.isEmpty ? nil : $0 }
            ?? (environment["XDG_CACHE_HOME"].map { $0 + "/huggingface" } ?? NSHomeDirectory() + "/.cache/huggingface")
        cacheRoot = environment["HF_HUB_CACHE"].flatMap { $0.isEmpty ? nil : $0 } ?? home + "/hub"
        token = environment["HF_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        offline = ["1", "true", "yes", "on"].contains((environment["HF_HUB_OFFLINE"] ?? "").lowercased())
    }

    /// Whether `source` names a Hub model rather than a local file or directory:
    /// "org/name" with no such path on disk.
    public static func isHubID(_ source: String) -> Bool {
        if FileManager.default.fileExists(atPath: source) { return false }
        if source.hasPrefix("/") || source.hasPrefix(".") || source.hasPrefix("~") || source.hasSuffix(".gguf") { return false }
        let parts = source.split(separator: "/", omittingEmptySubsequences: false)
        let allowed = CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "-_."))
        return parts.count == 2 && parts.allSatisfy { !$0.isEmpty && $0.unicodeScalars.allSatisfy(allowed.contains) }
    }

    /// A local path for `source`: itself when it is one, else the Hub model's
    /// snapshot directory (downloading what is missing).
    public static func localPath(_ source: String, progress: ((String, Int64, Int64?) -> Void)? = nil) throws -> String {
        guard isHubID(source) else { return source }
        var hub = HubModel()
        hub.progress = progress
        return try hub.snapshot(source)
    }

    public func repoDirectory(_ id: String) -> String {
        cacheRoot + "/models--" + id.replacingOccurrences(of: "/", with: "--")
    }

    /// The snapshot directory of `id` at `revision`, with every model file present.
    public func snapshot(_ id: String, revision: String = "main") throws -> String {
        let repo = repoDirectory(id)
        let cachedCommit = (try? String(contentsOfFile: repo + "/refs/" + revision, encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines)
        if offline {
            guard let commit = cachedCommit, FileManager.default.fileExists(atPath: repo + "/snapshots/\(commit)/config.json") else {
                throw HubError("\(id): HF_HUB_OFFLINE is set and \(repo) has no cached snapshot for '\(revision)'; unset HF_HUB_OFFLINE to download it, or pass a local directory or .gguf")
            }
            return repo + "/snapshots/" + commit
        }
        let info: (commit: String, files: [String])
        do {
            info = try revisionInfo(id, revision: revision)
        } catch let error as HubError where error.isNetwork {
            // No network: a complete cached snapshot is as good as a fresh one.
            if let commit = cachedCommit, FileManager.default.fileExists(atPath: repo + "/snapshots/\(commit)/config.json") {
                return repo + "/snapshots/" + commit
            }
            throw error
        }
        let snapshot = repo + "/snapshots/" + info.commit
        try FileManager.default.createDirectory(atPath: snapshot, withIntermediateDirectories: true)
        var wanted = Self.modelFiles.filter(info.files.contains)
        guard wanted.contains("config.json") else {
            throw HubError("\(id) at '\(revision)' has no config.json; Loft loads transformers-style models (or pass a .gguf file)")
        }
        if info.files.contains("model.safetensors.index.json") {
            try download(id, commit: info.commit, file: "model.safetensors.index.json", into: snapshot)
            let index = try Data(contentsOf: URL(fileURLWithPath: snapshot + "/model.safetensors.index.json"))
            guard let map = (try JSONSerialization.jsonObject(with: index) as? [String: Any])?["weight_map"] as? [String: String] else {
                throw HubError("\(id): model.safetensors.index.json has no weight_map")
            }
            wanted += Set(map.values).sorted()
        } else if info.files.contains("model.safetensors") {
            wanted.append("model.safetensors")
        } else {
            throw HubError("\(id) at '\(revision)' has no safetensors weights (model.safetensors or an index); Loft does not read PyTorch .bin checkpoints")
        }
        for file in wanted { try download(id, commit: info.commit, file: file, into: snapshot) }
        try FileManager.default.createDirectory(atPath: repo + "/refs", withIntermediateDirectories: true)
        try info.commit.write(toFile: repo + "/refs/" + revision, atomically: true, encoding: .utf8)
        return snapshot
    }

    /// The commit a revision points to and the repository's file names
    /// (GET /api/models/<id>/revision/<revision>).
    func revisionInfo(_ id: String, revision: String) throws -> (commit: String, files: [String]) {
        let url = "\(endpoint)/api/models/\(id)/revision/\(revision)"
        let (data, _) = try request(url, id: id, revision: revision)
        guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any], let sha = json["sha"] as? String,
              let siblings = json["siblings"] as? [[String: Any]] else {
            throw HubError("\(url): the answer is not a model description (no sha/siblings); check HF_ENDPOINT")
        }
        return (sha, siblings.compactMap { $0["rfilename"] as? String })
    }

    /// Downloads one file into the snapshot unless it is already there,
    /// resuming a `.incomplete` partial download with a Range request.
    func download(_ id: String, commit: String, file: String, into snapshot: String) throws {
        let target = snapshot + "/" + file
        if FileManager.default.fileExists(atPath: target) { return }
        let partial = target + ".incomplete"
        let fm = FileManager.default
        if !fm.fileExists(atPath: partial) { _ = fm.createFile(atPath: partial, contents: nil) }
        let have = ((try? fm.attributesOfItem(atPath: partial))?[.size] as? NSNumber)?.int64Value ?? 0
        let url = "\(endpoint)/\(id)/resolve/\(commit)/\(file)"
        try stream(url, id: id, revision: commit, to: partial, from: have, name: file)
        try fm.moveItem(atPath: partial, toPath: target)
    }

    func makeRequest(_ url: String, range: Int64? = nil) throws -> URLRequest {
        guard let u = URL(string: url) else { throw HubError("\(url) is not a valid URL; check HF_ENDPOINT and the model id") }
        var request = URLRequest(url: u)
        request.setValue("loft", forHTTPHeaderField: "User-Agent")
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        if let range, range > 0 { request.setValue("bytes=\(range)-", forHTTPHeaderField: "Range") }
        return request
    }

    func request(_ url: String, id: String, revision: String) throws -> (Data, HTTPURLResponse) {
        let request = try makeRequest(url)
        final class Box: @unchecked Sendable { var data: Data?, response: URLResponse?, error: Error? }
        let box = Box(), done = DispatchSemaphore(value: 0)
        URLSession.shared.dataTask(with: request) { data, response, error in
            (box.data, box.response, box.error) = (data, response, error)
            done.signal()
        }.resume()
        done.wait()
        if let error = box.error { throw HubError.network(url, error) }
        guard let http = box.response as? HTTPURLResponse else { throw HubError("\(url): no HTTP response") }
        try Self.check(status: http.statusCode, url: url, id: id, revision: revision)
        return (box.data ?? Data(), http)
    }

    /// What each HTTP failure means for the user.
    static func check(status: Int, url: String, id: String, revision: String) throws {
        switch status {
        case 200 ..< 300: return
        case 401, 403:
            throw HubError("\(id): access denied (HTTP \(status)). The model may be gated or private: accept its license at https://huggingface.co/\(id) and set HF_TOKEN to a token that can read it", status: status)
        case 404:
            throw HubError("\(id): not found (HTTP 404 for \(url)); check the model id and the revision '\(revision)'", status: status)
        default:
            throw HubError("\(id): the Hub answered HTTP \(status) for \(url); try again later, or pass a local directory or .gguf", status: status)
        }
    }

    /// Streams `url` onto the end of the file at `path` (which holds `offset` bytes).
    func stream(_ url: String, id: String, revision: String, to path: String, from offset: Int64, name: String) throws {
        let request = try makeRequest(url, range: offset)
        guard let handle = FileHandle(forWritingAtPath: path) else { throw HubError("\(path): cannot write; check permissions on the cache") }
        defer { try? handle.close() }
        let receiver = StreamReceiver(handle: handle, offset: offset, name: name, progress: progress)
        let session = URLSession(configuration: .default, delegate: receiver, delegateQueue: nil)
        session.dataTask(with: request).resume()
        receiver.done.wait()
        session.finishTasksAndInvalidate()
        if let error = receiver.error { throw HubError.network(url, error) }
        try Self.check(status: receiver.status, url: url, id: id, revision: revision)
        if let expected = receiver.expectedTotal, receiver.written != expected {
            throw HubError("\(url): the download stopped at \(receiver.written) of \(expected) bytes; run again to resume it")
        }
    }
}

/// Writes a response body to disk as it arrives.
final class StreamReceiver: NSObject, URLSessionDataDelegate, @unchecked Sendable {
    let handle: FileHandle
    let name: String
    let progress: ((String, Int64, Int64?) -> Void)?
    let done = DispatchSemaphore(value: 0)
    var status = 0
    var written: Int64
    var expectedTotal: Int64?
    var error: Error?

    init(handle: FileHandle, offset: Int64, name: String, progress: ((String, Int64, Int64?) -> Void)?) {
        self.handle = handle
        written = offset
        self.name = name
        self.progress = progress
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive response: URLResponse,
                    completionHandler: @escaping (URLSession.ResponseDisposition) -> Void) {
        let http = response as? HTTPURLResponse
        status = http?.statusCode ?? 0
        if status == 200 && written > 0 {
            // The server ignored the Range header: start the file over.
            handle.truncateFile(atOffset: 0)
            written = 0
        }
        if status == 200 || status == 206 {
            handle.seekToEndOfFile()
            let length = response.expectedContentLength
            expectedTotal = length >= 0 ? written + length : nil
        }
        completionHandler((200 ..< 300).contains(status) ? .allow : .cancel)
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
        handle.write(data)
        written += Int64(data.count)
        progress?(name, written, expectedTotal)
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: Error?) {
        // A bad status cancels the task; the status, not the cancellation, is the news.
        if let error, status == 0 || (200 ..< 300).contains(status) { self.error = error }
        done.signal()
    }
}

/// A failure to get a model from the Hub, saying what to do about it.
public struct HubError: Error, CustomStringConvertible {
    public let description: String
    let isNetwork: Bool
    /// The HTTP status that caused it, if one did.
    public let status: Int?
    public init(_ message: String, isNetwork: Bool = false, status: Int? = nil) {
        description = message
        self.isNetwork = isNetwork
        self.status = status
    }

    static func network(_ url: String, _ error: Error) -> HubError {
        HubError("\(url): cannot reach the Hub (\(error.localizedDescription)); check the network or HF_ENDPOINT, or pass a local model directory or .gguf file", isNetwork: true)
    }
}

/// A one-line progress display for downloads: bytes, rate and time left.
public final class DownloadProgressLine: @unchecked Sendable {
    var started: [String: (Date, Int64)] = [:]
    var lastPrint = Date.distantPast
    public init() {}

    public func update(file: String, done: Int64, total: Int64?) {
        let now = Date()
        if started[file] == nil { started[file] = (now, done) }
        let finished = total.map { done >= $0 } ?? false
        guard finished || now.timeIntervalSince(lastPrint) >= 0.2 else { return }
        lastPrint = now
        let (t0, b0) = started[file]!
        let rate = Double(done - b0) / max(now.timeIntervalSince(t0), 1e-3)
        var line = "\r\(file)  \(Self.bytes(done))"
        if let total {
            let eta = rate > 0 ? Double(total - done) / rate : 0
            line += " / \(Self.bytes(total))  \(Int(100 * Double(done) / Double(max(total, 1))))%  \(Self.bytes(Int64(rate)))/s  ETA \(Int(eta))s"
        } else {
            line += "  \(Self.bytes(Int64(rate)))/s"
        }
        FileHandle.standardError.write(Data((line + (finished ? "\n" : "")).utf8))
    }

    static func bytes(_ n: Int64) -> String {
        let units = ["B", "KB", "MB", "GB"]
        var v = Double(n), i = 0
        while v >= 1000 && i < units.count - 1 { v /= 1000; i += 1 }
        return i == 0 ? "\(n) B" : String(format: "%.1f %@", v, units[i])
    }
}
