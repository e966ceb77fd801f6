import Foundation
import Hummingbird
import LoftEngine
import LoftTemplates
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Adapter administration: GET/POST/DELETE /v1/adapters and vLLM's
/// /v1/load_lora_adapter, /v1/unload_lora_adapter. Runtime loads read only
/// below --adapter-dir.
extension OpenAIServer {
    func listAdapters() throws -> Response {
        let engine = try slot.ready()
        let adapters = engine.models.filter { $0.parent != nil }
        return jsonResponse(["object": "list", "data": .array(adapters.map(adapterJSON))])
    }

    func adapterJSON(_ m: ServedModel) -> JinjaValue {
        [
            "object": "adapter", "name": .string(m.name), "parent": m.parent.map(JinjaValue.string) ?? .null,
            "path": m.directory.map(JinjaValue.string) ?? .null, "rank": m.rank.map(JinjaValue.int) ?? .null,
            "loaded_at": .int(Int(m.loadedAt.timeIntervalSince1970)),
        ]
    }

    /// Body: `{"name", "path"}` or vLLM's `{"lora_name", "lora_path"}`.
    func loadAdapter(_ request: Request) async throws -> Response {
        let f = try await readBody(request)
        let engine = try slot.ready()
        let nameField = f["lora_name"] != nil ? "lora_name" : "name"
        let pathField = f["lora_path"] != nil ? "lora_path" : "path"
        guard let name = try f.string(nameField) else { throw APIError.badField("name", "is required: the name requests will use as `model`") }
        guard let path = try f.string(pathField) else { throw APIError.badField("path", "is required: the adapter's directory inside --adapter-dir") }
        try Self.checkAdapterName(name, field: nameField, baseName: engine.baseName)
        if engine.models.contains(where: { $0.name == name }) {
            throw APIError(.badRequest, "`\(nameField)`: an adapter named \(name) is already loaded; unload it first or pick another name",
                           param: nameField, code: "adapter_exists")
        }
        guard let root = options.adapterDirectory else {
            throw APIError(.forbidden, "loading adapters at run time is off: start the server with --adapter-dir DIR and put adapters there",
                           code: "adapter_dir_not_set")
        }
        let directory = try Self.resolveAdapterPath(path, inside: root, field: pathField)
        do {
            let model = try await onAdapterQueue { try engine.loadAdapter(name: name, directory: directory) }
            metrics.countAdapterLoad(ok: true)
            log("\(AccessLogMiddleware.timestamp()) loaded adapter \(name) from \(directory)")
            return jsonResponse(adapterJSON(model))
        } catch {
            metrics.countAdapterLoad(ok: false)
            throw APIError.from(error)
        }
    }

    /// vLLM's alias: body `{"lora_name"}`.
    func unloadAdapter(_ request: Request) async throws -> Response {
        let f = try await readBody(request)
        guard let name = try f.string("lora_name") ?? f.string("name") else { throw APIError.badField("lora_name", "is required") }
        return try unloadAdapter(name)
    }

    func unloadAdapter(_ name: String) throws -> Response {
        let engine = try slot.ready()
        if name == engine.baseName { throw APIError(.badRequest, "\(name) is the base model; only adapters can be unloaded", param: "name") }
        guard engine.models.contains(where: { $0.name == name && $0.parent != nil }) else {
            throw APIError(.notFound, "no adapter named \(name) is loaded; GET /v1/adapters lists them", param: "name", code: "model_not_found")
        }
        do { try engine.unloadAdapter(name: name) } catch { throw APIError.from(error, promptField: "name") }
        log("\(AccessLogMiddleware.timestamp()) unloaded adapter \(name)")
        return jsonResponse(["object": "adapter", "name": .string(name), "deleted": true])
    }

    func onAdapterQueue<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            adapterQueue.async { continuation.resume(with: Result { try work() }) }
        }
    }

    /// Names requests can use as `model`: letters, digits, `.`, `_`, `-`; 64 at most.
    static func checkAdapterName(_ name: String, field: String, baseName: String) throws {
        let allowed = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
        guard !name.isEmpty, name.count <= 64, name.unicodeScalars.allSatisfy(allowed.contains), name.first != ".", name.first != "-" else {
            throw APIError.badField(field, "must be 1-64 letters, digits, `.`, `_` or `-` (not starting with `.` or `-`); got \(name.debugDescription)")
        }
        if name == baseName { throw APIError.badField(field, "\(name) is the base model's name; pick another") }
    }

    /// The real directory `path` names, which must lie inside `root` once every
    /// symlink is resolved: `..`, absolute paths elsewhere and links out are refused.
    static func resolveAdapterPath(_ path: String, inside root: String, field: String) throws -> String {
        let outside = APIError(.forbidden, "`\(field)`: adapters load only from inside --adapter-dir; \(path.debugDescription) is outside it",
                               param: field, code: "path_outside_adapter_dir")
        guard !path.isEmpty, !path.contains("\0") else { throw APIError.badField(field, "must name a directory inside --adapter-dir") }
        if path.split(separator: "/").contains("..") { throw outside }
        guard let realRoot = realPath(root) else {
            throw APIError(.internalServerError, "--adapter-dir \(root) is gone", code: "adapter_dir_missing")
        }
        let candidate = path.hasPrefix("/") ? path : realRoot + "/" + path
        guard let real = realPath(candidate) else {
            throw APIError(.notFound, "`\(field)`: no adapter directory \(path.debugDescription) inside --adapter-dir", param: field, code: "adapter_not_found")
        }
        guard real.hasPrefix(realRoot.hasSuffix("/") ? realRoot : realRoot + "/") else { throw outside }
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: real, isDirectory: &isDir), isDir.boolValue else {
            throw APIError.badField(field, "\(path.debugDescription) is not a directory; name the adapter's directory (with adapter_config.json)")
        }
        return real
    }

    static func realPath(_ path: String) -> String? {
        guard let p = realpath(path, nil) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }
}
