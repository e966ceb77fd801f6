import ArgumentParser
import Foundation
import LoftEngine
import LoftRuns
import LoftUI

struct UICommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ui",
        abstract: "A local web app: launch, watch, compare and chat with runs (over the run registry).",
        discussion: "Binds 127.0.0.1 by default. Another address needs a password, asked on first start (or LOFT_UI_PASSWORD) and stored hashed in $LOFT_HOME/ui-password.")

    @Option(help: "Address to listen on.") var host = "127.0.0.1"
    @Option(help: "Port to listen on.") var port = 7860
    @Option(name: .customLong("allow-dir"), help: "Another directory forms may name (repeatable); the current directory, $LOFT_HOME and the model caches always may.")
    var allowDirs: [String] = []

    func run() throws {
        let home = RunRegistry.home
        if !UIAuth.isLoopback(host) { try ensurePassword(home: home) }
        var config = UIServer.Configuration(loftPath: Self.executablePath(), engineFactory: UIEngines.make)
        config.host = host
        config.port = port
        config.home = home
        config.allowedDirectories = allowDirs
        config.templateConfig = Self.quickstart()
        let server = try UIServer(config)
        // The CLI is synchronous: the server runs on the concurrency pool while this thread waits.
        final class Outcome: @unchecked Sendable { var error: Error? }
        let outcome = Outcome()
        let done = DispatchSemaphore(value: 0)
        Task {
            do { try await server.run() } catch { outcome.error = error }
            done.signal()
        }
        done.wait()
        if let error = outcome.error { throw error }
    }

    /// The first start on a non-loopback address sets the password (stored as PBKDF2-SHA256).
    func ensurePassword(home: String) throws {
        let file = UIServer.passwordFile(home: home)
        if let r = try? String(contentsOfFile: file, encoding: .utf8), !r.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { return }
        var password = ProcessInfo.processInfo.environment["LOFT_UI_PASSWORD"] ?? ""
        if password.isEmpty, isatty(STDIN_FILENO) != 0 {
            FileHandle.standardError.write(Data("loft ui on \(host) is reachable from other machines; set a password: ".utf8))
            password = readLine() ?? ""
        }
        guard password.count >= 8 else {
            throw ValidationError("--host \(host) is not loopback: set a password of 8 or more characters (LOFT_UI_PASSWORD or the prompt), or use --host 127.0.0.1")
        }
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
        try UIAuth.hashPassword(password).write(toFile: file, atomically: true, encoding: .utf8)
        chmod(file, 0o600)
    }

    static func executablePath() -> String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
            ?? URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL.path
    }

    /// examples/quickstart.yaml beside the working directory or the binary (.build/release/loft).
    static func quickstart() -> String? {
        let exe = URL(fileURLWithPath: executablePath())
        let candidates = [FileManager.default.currentDirectoryPath + "/examples/quickstart.yaml",
                          exe.deletingLastPathComponent().appendingPathComponent("../../../examples/quickstart.yaml").standardizedFileURL.path,
                          exe.deletingLastPathComponent().appendingPathComponent("../../examples/quickstart.yaml").standardizedFileURL.path]
        return candidates.first { FileManager.default.fileExists(atPath: $0) }
    }
}

/// The chat's engine for a base model.
enum UIEngines {
    @Sendable static func make(baseModel: String) throws -> any GenerationEngine {
        // The serving engine: the two sides of a comparison run in one batch.
        try BatchEngine(path: baseModel, configuration: EngineConfiguration(maxBatch: 8))
    }
}
