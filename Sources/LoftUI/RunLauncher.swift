import Foundation
import LoftRuns
#if canImport(Glibc)
import Glibc
#endif

/// Starts runs as child processes of `loft` itself (never through a shell),
/// one training run at a time from the queue. A child gets its own session
/// (setsid) and writes its log to a file, so it outlives the UI: a restarted
/// UI finds it in the registry by pid and start time.
public final class RunLauncher: @unchecked Sendable {
    public let registry: RunRegistry
    /// The `loft` executable the children run.
    public let loftPath: String
    public let home: String
    private var children: Set<pid_t> = []
    /// Runs already asked to stop: a second SIGINT would make them quit at once, without their checkpoint.
    private var stopping: Set<pid_t> = []
    private let lock = NSLock()

    public init(registry: RunRegistry, loftPath: String, home: String) {
        self.registry = registry
        self.loftPath = loftPath
        self.home = home
    }

    /// $LOFT_HOME/runs/ID: the config, the log and (by default) the output of a run the UI made.
    public func directory(for id: String) -> String { home + "/runs/" + id }

    /// Queues a training run of `yaml` (already validated). Returns its record.
    public func enqueue(yaml: String, name: String, id: String = RunRegistry.newID(), outputDir: String?,
                        baseModel: String?) throws -> RunRecord {
        let dir = directory(for: id)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let configPath = dir + "/config.yaml"
        try yaml.write(toFile: configPath, atomically: true, encoding: .utf8)
        var r = RunRecord(id: id, name: name, kind: "train", status: .queued)
        r.configPath = configPath
        r.outputDir = outputDir
        r.baseModel = baseModel
        r.logPath = dir + "/train.log"
        r.command = [loftPath, "train", configPath, "--run-id", id]
        try registry.insert(r)
        return r
    }

    /// Queues a stopped or failed run again, continuing from its newest checkpoint.
    public func resume(_ id: String) throws {
        try registry.modify(id) { r in
            guard r.kind == "train", !r.status.isActive, var command = r.command else { return }
            if !command.contains("--resume") { command.append("--resume") }
            r.command = command
            r.status = .queued
            r.error = nil
            r.endedAt = nil
        }
    }

    /// Stops a run: a running one gets SIGINT (it finishes its step, writes a
    /// checkpoint and records `stopped`); a queued one leaves the queue.
    public func stop(_ id: String) throws {
        guard let r = try registry.run(id) else { throw RegistryError("no run \(id)") }
        switch r.status {
        case .queued:
            try registry.modify(id) { $0.status = .stopped; $0.endedAt = Date() }
        case .running:
            guard let pid = r.pid, ProcessIdentity.isAlive(pid: pid, start: r.processStart) else {
                try registry.reconcileDeadRuns()
                return
            }
            let first = lock.withLock { stopping.insert(pid_t(pid)).inserted }
            if first { kill(pid_t(pid), SIGINT) }
        default: break
        }
    }

    /// One turn of the queue: reap finished children, mark dead runs failed,
    /// and start the oldest queued run when no training run is running.
    public func tick() {
        reap()
        _ = try? registry.reconcileDeadRuns()
        guard let running = try? registry.runs(kind: "train", status: .running), running.isEmpty,
              let queued = try? registry.runs(kind: "train", status: .queued), let next = queued.last else { return }
        do { try start(next) } catch {
            _ = try? registry.modify(next.id) { $0.status = .failed; $0.endedAt = Date(); $0.error = "could not start: \(error)" }
        }
    }

    /// Starts a recorded command (a queued run, or an export job) now.
    public func start(_ run: RunRecord) throws {
        guard let command = run.command, !command.isEmpty else { throw RegistryError("run \(run.id) has no command to start") }
        let log = run.logPath ?? directory(for: run.id) + "/run.log"
        try FileManager.default.createDirectory(atPath: URL(fileURLWithPath: log).deletingLastPathComponent().path,
                                                withIntermediateDirectories: true)
        let pid = try Self.spawn(command, log: log, workingDirectory: directory(for: run.id))
        lock.withLock { _ = children.insert(pid) }
        // The child records itself as running within a second; until then the registry knows its pid.
        try registry.modify(run.id) { r in
            if r.status == .queued {
                r.status = .running
                r.pid = Int(pid)
                r.processStart = ProcessIdentity.startToken(pid: pid)
                r.host = ProcessIdentity.hostName
                r.startedAt = Date()
            }
        }
    }

    /// Registers an export (merge, GGUF, Ollama) of `parent` and starts it at once.
    public func startJob(kind: String, name: String, parent: String?, arguments: [String]) throws -> RunRecord {
        let id = RunRegistry.newID()
        var r = RunRecord(id: id, name: name, kind: kind, status: .queued)
        r.parentID = parent
        r.logPath = directory(for: id) + "/\(kind).log"
        r.command = [loftPath] + arguments
        try registry.insert(r)
        try start(r)
        return try registry.run(id) ?? r
    }

    /// Collects exited children; a job that does not record itself (exports)
    /// gets done/failed from its exit status.
    func reap() {
        let pids = lock.withLock { children }
        for pid in pids {
            var status: Int32 = 0
            let r = waitpid(pid, &status, WNOHANG)
            guard r == pid || (r == -1 && errno == ECHILD) else { continue }
            _ = lock.withLock { children.remove(pid) }
            let exited = (status & 0x7f) == 0
            let code = exited ? (status >> 8) & 0xff : -1
            if let run = (try? registry.runs(status: .running))?.first(where: { $0.pid == Int(pid) }), run.kind != "train" {
                _ = try? registry.modify(run.id) { rec in
                    rec.status = code == 0 ? .done : .failed
                    rec.endedAt = Date()
                    if code != 0 { rec.error = "exited with status \(code); see its log" }
                }
                if code == 0 { recordOutputs(of: run) }
            }
        }
    }

    /// An export's --out is its artifact.
    func recordOutputs(of run: RunRecord) {
        guard let command = run.command, let i = command.firstIndex(of: "--out"), i + 1 < command.count else { return }
        let path = command[i + 1]
        try? registry.addArtifact(run.id, Artifact(kind: run.kind, path: path, bytes: RunRecorder.size(path)))
        if let parent = run.parentID {
            try? registry.addArtifact(parent, Artifact(kind: run.kind, path: path, bytes: RunRecorder.size(path)))
        }
    }

    /// posix_spawn with a new session, stdin from /dev/null, stdout and stderr appended to `log`.
    static func spawn(_ argv: [String], log: String, workingDirectory: String) throws -> pid_t {
        try FileManager.default.createDirectory(atPath: workingDirectory, withIntermediateDirectories: true)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        // A session of its own: Ctrl-C in the UI's terminal does not reach the runs.
        // POSIX_SPAWN_SETSID (glibc 0x80, Darwin 0x400) is a macro Swift does not import.
        #if os(Linux)
        let setsid: Int16 = 0x80
        #else
        let setsid: Int16 = 0x400
        #endif
        posix_spawnattr_setflags(&attr, setsid)
        var env = ProcessInfo.processInfo.environment
        env["LOFT_HOME"] = env["LOFT_HOME"] ?? URL(fileURLWithPath: workingDirectory).deletingLastPathComponent()
            .deletingLastPathComponent().path
        // The child records itself into the entry the UI made for it.
        env["LOFT_RUN_ID"] = URL(fileURLWithPath: workingDirectory).lastPathComponent
        let envStrings = env.map { "\($0.key)=\($0.value)" }
        var cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        var cEnv: [UnsafeMutablePointer<CChar>?] = envStrings.map { strdup($0) } + [nil]
        defer { for p in cArgs { free(p) }; for p in cEnv { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, argv[0], &actions, &attr, &cArgs, &cEnv)
        guard rc == 0 else {
            throw RegistryError("cannot start \(argv[0]): \(String(cString: strerror(rc)))")
        }
        return pid
    }
}
