import Foundation

/// A local stand-in for the Hugging Face Hub (Tests/LoftHubTests/Fixtures/fake_hub.py,
/// run with python3) serving the files under `served`, for the model and dataset
/// download tests. Stopped by `stop()` (tests call it from a teardown block).
public final class FakeHub {
    public let endpoint: String
    public let logPath: String
    let work: String
    let process: Process

    /// Starts the server; `token` makes it answer 401 to requests without it.
    public init(served: String, work: String, token: String? = nil) throws {
        let script = SharedTestPaths.repoRoot.appendingPathComponent("Tests/LoftHubTests/Fixtures/fake_hub.py").path
        let portFile = work + "/port"
        self.work = work
        logPath = work + "/requests.log"
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", script, served, portFile, logPath] + (token.map { [$0] } ?? [])
        try process.run()
        for _ in 0 ..< 200 {
            if let port = try? String(contentsOfFile: portFile, encoding: .utf8), !port.isEmpty {
                endpoint = "http://127.0.0.1:\(port)"
                return
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        process.terminate()
        throw NSError(domain: "FakeHub", code: 1, userInfo: [NSLocalizedDescriptionKey: "the fake Hub did not start (is python3 installed?)"])
    }

    /// Stops the server and removes `work`.
    public func stop() {
        process.terminate()
        process.waitUntilExit()
        try? FileManager.default.removeItem(atPath: work)
    }

    /// The environment of a Hub client of this server, caching under `work`/cache.
    public func environment(token: String? = nil, offline: Bool = false) -> [String: String] {
        var env = ["HF_ENDPOINT": endpoint, "HF_HUB_CACHE": work + "/cache"]
        if let token { env["HF_TOKEN"] = token }
        if offline { env["HF_HUB_OFFLINE"] = "1" }
        return env
    }

    /// One line per request: "GET PATH RANGE AUTH".
    public func requests() -> [String] {
        ((try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }
}
