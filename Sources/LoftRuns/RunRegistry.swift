import Foundation
import GRDB

/// Where a run stands. `queued` runs wait for the UI's queue; a `running` run
/// whose process is gone is marked `failed` the next time the registry opens.
public enum RunStatus: String, Sendable, Codable, CaseIterable {
    case queued, running, done, failed, stopped
    public var isActive: Bool { self == .queued || self == .running }
}

/// One `loft train`, `loft eval` or export, as the registry keeps it.
public struct RunRecord: Sendable, Codable, Equatable {
    public var id: String
    public var name: String
    /// train, eval or export.
    public var kind: String
    public var status: RunStatus
    /// The resolved config as JSON (what the run actually used).
    public var configJSON: String?
    /// The YAML file the run was started from.
    public var configPath: String?
    public var baseModel: String?
    public var baseModelSHA256: String?
    public var datasetSHA256: String?
    public var outputDir: String?
    public var host: String?
    public var pid: Int?
    /// The process's start time as the kernel counts it (with the boot id):
    /// a pid reused by another process after a crash does not pass for the run.
    public var processStart: String?
    public var createdAt: Date
    public var startedAt: Date?
    public var endedAt: Date?
    public var peakRSSBytes: Int?
    public var totalSteps: Int?
    public var error: String?
    /// The train run an eval or export belongs to.
    public var parentID: String?
    public var logPath: String?
    /// The command line that runs (or resumes) it, as arguments.
    public var command: [String]?
    /// Filled by `list`/`run`: the newest step and its loss.
    public var lastStep: Int?
    public var lastLoss: Double?

    public init(id: String = RunRegistry.newID(), name: String, kind: String = "train", status: RunStatus = .queued,
                createdAt: Date = Date()) {
        self.id = id; self.name = name; self.kind = kind; self.status = status; self.createdAt = createdAt
    }
}

/// One optimizer step's numbers (eval_loss only at evaluation steps).
public struct MetricPoint: Sendable, Codable, Equatable {
    public var step: Int
    public var loss: Double?
    public var evalLoss: Double?
    public var learningRate: Double?
    public var gradNorm: Double?
    public var tokensPerSecond: Double?
    public var time: Double
    public init(step: Int, loss: Double? = nil, evalLoss: Double? = nil, learningRate: Double? = nil, gradNorm: Double? = nil,
                tokensPerSecond: Double? = nil, time: Double = Date().timeIntervalSince1970) {
        self.step = step; self.loss = loss; self.evalLoss = evalLoss; self.learningRate = learningRate
        self.gradNorm = gradNorm; self.tokensPerSecond = tokensPerSecond; self.time = time
    }
}

/// A file a run produced: adapter, checkpoint, export, report, chart.
public struct Artifact: Sendable, Codable, Equatable {
    public var kind: String
    public var path: String
    public var step: Int?
    public var bytes: Int?
    public var createdAt: Date
    public init(kind: String, path: String, step: Int? = nil, bytes: Int? = nil, createdAt: Date = Date()) {
        self.kind = kind; self.path = path; self.step = step; self.bytes = bytes; self.createdAt = createdAt
    }
}

/// One evaluation's results (a `loft eval` report, or a train run's own eval).
public struct EvalResult: Sendable, Codable, Equatable {
    public var name: String
    /// metric name → value
    public var metrics: [String: Double]
    public var reportPath: String?
    public var createdAt: Date
    public init(name: String, metrics: [String: Double], reportPath: String? = nil, createdAt: Date = Date()) {
        self.name = name; self.metrics = metrics; self.reportPath = reportPath; self.createdAt = createdAt
    }
}

public struct RegistryError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

/// The SQLite registry of runs at `$LOFT_HOME/loft.db` (default `~/.loft`),
/// in WAL mode so a training process writes while the UI and `loft runs` read.
public final class RunRegistry: @unchecked Sendable {
    public let path: String
    let pool: DatabasePool

    /// `$LOFT_HOME`, or `~/.loft`.
    public static var home: String {
        if let h = ProcessInfo.processInfo.environment["LOFT_HOME"], !h.isEmpty { return h }
        return NSHomeDirectory() + "/.loft"
    }

    /// Opens (creating and migrating) the registry, then marks the runs of
    /// this host whose process died as failed.
    public init(path: String = RunRegistry.home + "/loft.db") throws {
        self.path = path
        let dir = URL(fileURLWithPath: path).deletingLastPathComponent().path
        do { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) } catch {
            throw RegistryError("cannot create \(dir) for the run registry (\(error.localizedDescription)); set LOFT_HOME to a writable directory")
        }
        var config = Configuration()
        // Several processes write (each run, the UI): wait for the lock rather than fail.
        config.busyMode = .timeout(10)
        do {
            pool = try DatabasePool(path: path, configuration: config)
            try Self.migrator.migrate(pool)
        } catch {
            throw RegistryError("the run registry \(path) cannot be opened: \(error); move it aside to start a new one")
        }
        try reconcileDeadRuns()
    }

    /// Versioned schema: add a migration, never edit a shipped one.
    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE run (
                    id TEXT PRIMARY KEY NOT NULL, name TEXT NOT NULL, kind TEXT NOT NULL, status TEXT NOT NULL,
                    config_json TEXT, config_path TEXT, base_model TEXT, base_model_sha256 TEXT, dataset_sha256 TEXT,
                    output_dir TEXT, host TEXT, pid INTEGER, process_start TEXT,
                    created_at REAL NOT NULL, started_at REAL, ended_at REAL, peak_rss_bytes INTEGER, total_steps INTEGER,
                    error TEXT, parent_id TEXT, log_path TEXT, command TEXT);
                CREATE INDEX run_status ON run(status);
                CREATE TABLE metric (
                    run_id TEXT NOT NULL REFERENCES run(id) ON DELETE CASCADE, step INTEGER NOT NULL,
                    loss REAL, eval_loss REAL, lr REAL, grad_norm REAL, tokens_per_s REAL, time REAL NOT NULL,
                    PRIMARY KEY (run_id, step));
                CREATE TABLE artifact (
                    run_id TEXT NOT NULL REFERENCES run(id) ON DELETE CASCADE, kind TEXT NOT NULL, path TEXT NOT NULL,
                    step INTEGER, bytes INTEGER, created_at REAL NOT NULL, PRIMARY KEY (run_id, path));
                CREATE TABLE eval_result (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    run_id TEXT NOT NULL REFERENCES run(id) ON DELETE CASCADE, name TEXT NOT NULL,
                    metrics TEXT NOT NULL, report_path TEXT, created_at REAL NOT NULL);
                """)
        }
        return m
    }

    /// Sortable and short: 20261202-133900-a1b2.
    public static func newID(date: Date = Date()) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyyMMdd-HHmmss"
        return f.string(from: date) + "-" + String(format: "%04x", UInt16.random(in: 0 ... .max))
    }

    // MARK: Runs

    public func insert(_ run: RunRecord) throws {
        try pool.write { db in
            try db.execute(sql: """
                INSERT INTO run (id, name, kind, status, config_json, config_path, base_model, base_model_sha256, dataset_sha256,
                    output_dir, host, pid, process_start, created_at, started_at, ended_at, peak_rss_bytes, total_steps,
                    error, parent_id, log_path, command)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: Self.arguments(run))
        }
    }

    /// Writes every field of `run` (the id picks the row).
    public func update(_ run: RunRecord) throws {
        try pool.write { db in
            var args = Self.arguments(run)
            args += [run.id]
            try db.execute(sql: """
                UPDATE run SET id = ?, name = ?, kind = ?, status = ?, config_json = ?, config_path = ?, base_model = ?,
                    base_model_sha256 = ?, dataset_sha256 = ?, output_dir = ?, host = ?, pid = ?, process_start = ?,
                    created_at = ?, started_at = ?, ended_at = ?, peak_rss_bytes = ?, total_steps = ?, error = ?,
                    parent_id = ?, log_path = ?, command = ?
                WHERE id = ?
                """, arguments: args)
        }
    }

    /// Changes one run in place (read, edit, write in one transaction).
    @discardableResult
    public func modify(_ id: String, _ edit: (inout RunRecord) -> Void) throws -> RunRecord {
        try pool.write { db in
            guard let row = try Row.fetchOne(db, sql: Self.selectRuns + " WHERE r.id = ?", arguments: [id]) else {
                throw RegistryError("no run \(id) in the registry; `loft runs list` shows the runs")
            }
            var run = Self.record(row)
            edit(&run)
            var args = Self.arguments(run)
            args += [id]
            try db.execute(sql: """
                UPDATE run SET id = ?, name = ?, kind = ?, status = ?, config_json = ?, config_path = ?, base_model = ?,
                    base_model_sha256 = ?, dataset_sha256 = ?, output_dir = ?, host = ?, pid = ?, process_start = ?,
                    created_at = ?, started_at = ?, ended_at = ?, peak_rss_bytes = ?, total_steps = ?, error = ?,
                    parent_id = ?, log_path = ?, command = ?
                WHERE id = ?
                """, arguments: args)
            return run
        }
    }

    /// Runs newest first (optionally only some kinds or statuses).
    public func runs(kind: String? = nil, status: RunStatus? = nil, parentID: String? = nil) throws -> [RunRecord] {
        var clauses: [String] = [], args: StatementArguments = []
        if let kind { clauses.append("r.kind = ?"); args += [kind] }
        if let status { clauses.append("r.status = ?"); args += [status.rawValue] }
        if let parentID { clauses.append("r.parent_id = ?"); args += [parentID] }
        let sql = Self.selectRuns + (clauses.isEmpty ? "" : " WHERE " + clauses.joined(separator: " AND "))
            + " ORDER BY r.created_at DESC, r.id DESC"
        return try pool.read { db in try Row.fetchAll(db, sql: sql, arguments: args).map(Self.record) }
    }

    public func run(_ id: String) throws -> RunRecord? {
        try pool.read { db in try Row.fetchOne(db, sql: Self.selectRuns + " WHERE r.id = ?", arguments: [id]).map(Self.record) }
    }

    /// A run by its id, a unique prefix of it, or its name (the newest of that name).
    public func find(_ key: String) throws -> RunRecord {
        if let r = try run(key) { return r }
        let all = try runs()
        let byPrefix = all.filter { $0.id.hasPrefix(key) }
        if byPrefix.count == 1 { return byPrefix[0] }
        if byPrefix.count > 1 {
            throw RegistryError("\(key) matches \(byPrefix.count) runs (\(byPrefix.prefix(4).map(\.id).joined(separator: ", ")), …); give more of the id")
        }
        if let named = all.first(where: { $0.name == key }) { return named }
        throw RegistryError("no run \(key) in the registry \(path); `loft runs list` shows the runs")
    }

    /// Deletes a run with its metrics, artifacts and eval results (not its files).
    public func remove(_ id: String) throws {
        try pool.write { db in
            try db.execute(sql: "DELETE FROM metric WHERE run_id = ?", arguments: [id])
            try db.execute(sql: "DELETE FROM artifact WHERE run_id = ?", arguments: [id])
            try db.execute(sql: "DELETE FROM eval_result WHERE run_id = ?", arguments: [id])
            try db.execute(sql: "DELETE FROM run WHERE id = ?", arguments: [id])
        }
    }

    // MARK: Metrics, artifacts, evals

    /// Records a training step (a resumed run rewrites the steps after its checkpoint).
    public func recordStep(_ runID: String, _ p: MetricPoint) throws {
        try pool.write { db in
            try db.execute(sql: """
                INSERT INTO metric (run_id, step, loss, lr, grad_norm, tokens_per_s, time) VALUES (?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT(run_id, step) DO UPDATE SET loss = excluded.loss, lr = excluded.lr, grad_norm = excluded.grad_norm,
                    tokens_per_s = excluded.tokens_per_s, time = excluded.time
                """, arguments: [runID, p.step, Self.finite(p.loss), Self.finite(p.learningRate), Self.finite(p.gradNorm),
                                 Self.finite(p.tokensPerSecond), p.time])
        }
    }

    /// Records the eval loss measured at `step`.
    public func recordEvalLoss(_ runID: String, step: Int, loss: Double, time: Double = Date().timeIntervalSince1970) throws {
        try pool.write { db in
            try db.execute(sql: """
                INSERT INTO metric (run_id, step, eval_loss, time) VALUES (?, ?, ?, ?)
                ON CONFLICT(run_id, step) DO UPDATE SET eval_loss = excluded.eval_loss
                """, arguments: [runID, step, Self.finite(loss), time])
        }
    }

    /// A resumed run starts again after `step`: the points it will rewrite go.
    public func dropMetrics(_ runID: String, after step: Int) throws {
        try pool.write { db in try db.execute(sql: "DELETE FROM metric WHERE run_id = ? AND step > ?", arguments: [runID, step]) }
    }

    /// Points with step > `after` (all of them by default), in step order.
    public func metrics(_ runID: String, after: Int = Int.min) throws -> [MetricPoint] {
        try pool.read { db in
            try Row.fetchAll(db, sql: """
                SELECT step, loss, eval_loss, lr, grad_norm, tokens_per_s, time FROM metric
                WHERE run_id = ? AND step > ? ORDER BY step
                """, arguments: [runID, after]).map { r in
                MetricPoint(step: r["step"], loss: r["loss"], evalLoss: r["eval_loss"], learningRate: r["lr"],
                            gradNorm: r["grad_norm"], tokensPerSecond: r["tokens_per_s"], time: r["time"])
            }
        }
    }

    public func addArtifact(_ runID: String, _ a: Artifact) throws {
        try pool.write { db in
            try db.execute(sql: """
                INSERT INTO artifact (run_id, kind, path, step, bytes, created_at) VALUES (?, ?, ?, ?, ?, ?)
                ON CONFLICT(run_id, path) DO UPDATE SET kind = excluded.kind, step = excluded.step, bytes = excluded.bytes,
                    created_at = excluded.created_at
                """, arguments: [runID, a.kind, a.path, a.step, a.bytes, a.createdAt.timeIntervalSince1970])
        }
    }

    public func artifacts(_ runID: String) throws -> [Artifact] {
        try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT kind, path, step, bytes, created_at FROM artifact WHERE run_id = ? ORDER BY created_at, path",
                             arguments: [runID]).map { r in
                Artifact(kind: r["kind"], path: r["path"], step: r["step"], bytes: r["bytes"],
                         createdAt: Date(timeIntervalSince1970: r["created_at"]))
            }
        }
    }

    public func addEvalResult(_ runID: String, _ e: EvalResult) throws {
        let json = String(decoding: try JSONSerialization.data(withJSONObject: e.metrics.filter { $0.value.isFinite },
                                                               options: [.sortedKeys]), as: UTF8.self)
        try pool.write { db in
            try db.execute(sql: "INSERT INTO eval_result (run_id, name, metrics, report_path, created_at) VALUES (?, ?, ?, ?, ?)",
                           arguments: [runID, e.name, json, e.reportPath, e.createdAt.timeIntervalSince1970])
        }
    }

    public func evalResults(_ runID: String) throws -> [EvalResult] {
        try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT name, metrics, report_path, created_at FROM eval_result WHERE run_id = ? ORDER BY id",
                             arguments: [runID]).map { r in
                let text: String = r["metrics"]
                let metrics = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Double] ?? [:]
                return EvalResult(name: r["name"], metrics: metrics, reportPath: r["report_path"],
                                  createdAt: Date(timeIntervalSince1970: r["created_at"]))
            }
        }
    }

    // MARK: Dead processes

    /// Runs of this host marked running whose process is gone (or whose pid
    /// now belongs to another process) become failed. Returns their ids.
    @discardableResult
    public func reconcileDeadRuns() throws -> [String] {
        let host = ProcessIdentity.hostName
        let running = try runs(status: .running).filter { $0.host == host }
        var failed: [String] = []
        for run in running {
            guard let pid = run.pid else { continue }
            if ProcessIdentity.isAlive(pid: pid, start: run.processStart) { continue }
            try modify(run.id) { r in
                guard r.status == .running else { return }
                r.status = .failed
                r.endedAt = r.endedAt ?? Date()
                r.error = r.error ?? "the process (pid \(pid)) ended without recording an end: it was killed or crashed; the log may say why"
            }
            failed.append(run.id)
        }
        return failed
    }

    // MARK: Rows

    static let selectRuns = """
        SELECT r.*, (SELECT step FROM metric m WHERE m.run_id = r.id AND m.loss IS NOT NULL ORDER BY step DESC LIMIT 1) AS last_step,
               (SELECT loss FROM metric m WHERE m.run_id = r.id AND m.loss IS NOT NULL ORDER BY step DESC LIMIT 1) AS last_loss
        FROM run r
        """

    static func finite(_ x: Double?) -> Double? { x.flatMap { $0.isFinite ? $0 : nil } }

    static func arguments(_ r: RunRecord) -> StatementArguments {
        let command = r.command.flatMap { try? JSONSerialization.data(withJSONObject: $0) }.map { String(decoding: $0, as: UTF8.self) }
        return [r.id, r.name, r.kind, r.status.rawValue, r.configJSON, r.configPath, r.baseModel, r.baseModelSHA256,
                r.datasetSHA256, r.outputDir, r.host, r.pid, r.processStart, r.createdAt.timeIntervalSince1970,
                r.startedAt?.timeIntervalSince1970, r.endedAt?.timeIntervalSince1970, r.peakRSSBytes, r.totalSteps,
                r.error, r.parentID, r.logPath, command]
    }

    static func record(_ row: Row) -> RunRecord {
        var r = RunRecord(id: row["id"], name: row["name"], kind: row["kind"],
                          status: RunStatus(rawValue: row["status"]) ?? .failed,
                          createdAt: Date(timeIntervalSince1970: row["created_at"]))
        r.configJSON = row["config_json"]; r.configPath = row["config_path"]; r.baseModel = row["base_model"]
        r.baseModelSHA256 = row["base_model_sha256"]; r.datasetSHA256 = row["dataset_sha256"]; r.outputDir = row["output_dir"]
        r.host = row["host"]; r.pid = row["pid"]; r.processStart = row["process_start"]
        r.startedAt = (row["started_at"] as Double?).map(Date.init(timeIntervalSince1970:))
        r.endedAt = (row["ended_at"] as Double?).map(Date.init(timeIntervalSince1970:))
        r.peakRSSBytes = row["peak_rss_bytes"]; r.totalSteps = row["total_steps"]; r.error = row["error"]
        r.parentID = row["parent_id"]; r.logPath = row["log_path"]
        if let c = row["command"] as String?, let a = try? JSONSerialization.jsonObject(with: Data(c.utf8)) as? [String] { r.command = a }
        r.lastStep = row["last_step"]; r.lastLoss = row["last_loss"]
        return r
    }
}

/// Who a process is: its pid and, on Linux, its start time (clock ticks since
/// boot, with the boot id), so that a pid reused after a crash is told apart.
public enum ProcessIdentity {
    public static var hostName: String { ProcessInfo.processInfo.hostName }

    public static func startToken(pid: Int32 = getpid()) -> String? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        // Fields after "(comm)": state is field 3, starttime field 22.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 19 else { return nil }
        let boot = (try? String(contentsOfFile: "/proc/sys/kernel/random/boot_id", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        return boot + ":" + fields[19]
    }

    /// Alive, not a zombie, and (when known) started when recorded.
    public static func isAlive(pid: Int, start: String?) -> Bool {
        guard pid > 0 else { return false }
        if kill(pid_t(pid), 0) != 0 && errno == ESRCH { return false }
        if let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") {
            let state = stat[stat.index(after: close)...].split(separator: " ").first
            if state == "Z" || state == "X" { return false }
            if let start, let now = startToken(pid: pid_t(pid)), now != start { return false }
        }
        return true
    }
}
