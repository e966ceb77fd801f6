import Foundation

/// How `loft serve` listens and whom it lets in. The defaults are the safe
/// ones: loopback only, no CORS, bounded bodies.
public struct ServerOptions: Sendable {
    public var host = "127.0.0.1"
    /// 0 picks a free port (tests); the bound port is reported by `onListening`.
    public var port = 8000
    /// Required on every route but /health when set (`Authorization: Bearer KEY`).
    public var apiKey: String?
    /// Required for adapter administration when set (and accepted everywhere).
    public var adminKey: String?
    /// Serving beyond loopback without a key needs this, said out loud.
    public var insecureNoAuth = false
    /// Runtime adapter loads read only below this directory; nil refuses them.
    public var adapterDirectory: String?
    /// Origins allowed by CORS ("*" for any); empty: no CORS headers at all.
    public var corsOrigins: [String] = []
    public var maxBodyBytes = 8 << 20
    /// A prompt longer than this many tokens is refused (413) before it is queued;
    /// nil: the engine's context length.
    public var maxPromptTokens: Int?
    /// The most choices (`n` times prompts) one request may ask for.
    public var maxChoices = 16

    public init() {}

    /// Refuses configurations that would expose the server: a non-loopback
    /// host with no key, unless `insecureNoAuth` says so.
    public func validate() throws {
        if let k = apiKey, k.isEmpty { throw ServerConfigurationError("the API key is empty; give a non-empty --api-key or --api-key-file") }
        if let k = adminKey, k.isEmpty { throw ServerConfigurationError("the admin key is empty; give a non-empty --admin-key") }
        if !Self.isLoopback(host) && apiKey == nil && !insecureNoAuth {
            throw ServerConfigurationError(
                "--host \(host) listens beyond this machine, so it needs a key: give --api-key-file FILE (or --api-key KEY), "
                + "or --insecure-no-auth to serve without one")
        }
        if port < 0 || port > 65535 { throw ServerConfigurationError("--port \(port) is not a TCP port (0…65535)") }
        if maxBodyBytes < 1024 { throw ServerConfigurationError("the body limit \(maxBodyBytes) bytes is too small; give at least 1 KiB") }
        if let dir = adapterDirectory {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
                throw ServerConfigurationError("--adapter-dir \(dir) is not a directory; create it or name an existing one")
            }
        }
    }

    /// 127.0.0.0/8, ::1 and localhost; everything else (0.0.0.0, ::, a LAN address) is reachable from outside.
    public static func isLoopback(_ host: String) -> Bool {
        let h = host.trimmingCharacters(in: CharacterSet(charactersIn: "[]")).lowercased()
        if h == "localhost" || h == "::1" || h == "0:0:0:0:0:0:0:1" { return true }
        let parts = h.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts[0] == "127" && parts.allSatisfy { UInt8($0) != nil }
    }
}

public struct ServerConfigurationError: Error, CustomStringConvertible {
    public let description: String
    public init(_ message: String) { description = message }
}
