import Foundation

/// What a running `loft train`, `loft eval` or export tells the registry.
/// A registry that cannot be written never stops the work: the first
/// failure is reported once on stderr and recording stops.
public final class RunRecorder: @unchecked Sendable {
    public let registry: RunRegistry?
    public let runID: String
    /// Every point of this run (from earlier sessions of a resumed run too), for loss.svg.
    public private(set) var points: [MetricPoint] = []
    private var failed = false
    private let lock = NSLock()

    public struct Start {
        public var kind = "train"
        public var name: String
        /// A run the UI queued (or an earlier session of this one) to continue instead of a new entry.
        public var adoptID: String?
        public var configJSON: String?
        public var configPath: String?
        public var baseModel: String?
        public var outputDir: String?
        public var totalSteps: Int?
        public var command: [String]?
        public var parentID: String?
        public var logPath: String?
        public init(kind: String = "train", name: String) { self.kind = kind; self.name = name }
    }

    /// Records this process as the run: a new entry, or `adoptID`'s. With
    /// `continueLatest` (a `--resume`), a train run of the same output_dir
    /// that is not running is continued under its id.
    /// Records into $LOFT_HOME/loft.db (a registry that cannot be opened is reported, and the work goes on).
    public convenience init(_ start: Start, continueLatest: Bool = false) {
        var reg: RunRegistry?
        do { reg = try RunRegistry() } catch { Self.warn("\(error)") }
        self.init(start, registry: reg, continueLatest: continueLatest)
    }

    /// Records into `registry` (nil: nowhere).
    public init(_ start: Start, registry reg: RunRegistry?, continueLatest: Bool = false) {
        self.registry = reg
        var id = start.adoptID
        if id == nil, continueLatest, let reg, let dir = start.outputDir {
            id = (try? reg.runs(kind: start.kind))?.first { $0.outputDir == dir && $0.status != .running }?.id
        }
        runID = id ?? RunRegistry.newID()
        guard let reg else { failed = true; return }
        do {
            let now = Date()
            if let id, try reg.run(id) != nil {
                try reg.modify(id) { r in
                    Self.fill(&r, start)
                    r.status = .running
                    r.startedAt = now
                    r.endedAt = nil
                    r.error = nil
                }
                points = try reg.metrics(id)
            } else {
                var r = RunRecord(id: runID, name: start.name, kind: start.kind, status: .running, createdAt: now)
                Self.fill(&r, start)
                r.startedAt = now
                try reg.insert(r)
            }
        } catch { fail(error) }
    }

    /// (An adopted run keeps the name it was given.)
    static func fill(_ r: inout RunRecord, _ s: Start) {
        r.kind = s.kind
        r.configJSON = s.configJSON ?? r.configJSON
        r.configPath = s.configPath ?? r.configPath
        r.baseModel = s.baseModel ?? r.baseModel
        r.outputDir = s.outputDir ?? r.outputDir
        r.totalSteps = s.totalSteps ?? r.totalSteps
        r.command = s.command ?? r.command
        r.parentID = s.parentID ?? r.parentID
        r.logPath = s.logPath ?? r.logPath
        r.host = ProcessIdentity.hostName
        r.pid = Int(getpid())
        r.processStart = ProcessIdentity.startToken()
    }

    /// A resumed run continues after `step`: later points are rewritten.
    public func resumed(at step: Int) {
        points.removeAll { $0.step > step }
        attempt { try $0.dropMetrics(runID, after: step) }
    }

    public func update(_ edit: @escaping (inout RunRecord) -> Void) {
        attempt { try $0.modify(self.runID, edit) }
    }

    public func step(_ p: MetricPoint) {
        lock.withLock {
            if let i = points.lastIndex(where: { $0.step == p.step }) {
                var q = p
                q.evalLoss = points[i].evalLoss
                points[i] = q
            } else {
                points.append(p)
            }
        }
        attempt { try $0.recordStep(self.runID, p) }
    }

    public func evalLoss(step: Int, loss: Double) {
        lock.withLock {
            if let i = points.lastIndex(where: { $0.step == step }) { points[i].evalLoss = loss }
            else { points.append(MetricPoint(step: step, evalLoss: loss)) }
        }
        attempt { try $0.recordEvalLoss(self.runID, step: step, loss: loss) }
    }

    public func artifact(kind: String, path: String, step: Int? = nil) {
        let bytes = Self.size(path)
        attempt { try $0.addArtifact(self.runID, Artifact(kind: kind, path: path, step: step, bytes: bytes)) }
    }

    public func evalResult(_ e: EvalResult) {
        attempt { try $0.addEvalResult(self.runID, e) }
    }

    /// The end: done, stopped or failed (with the error).
    public func finish(_ status: RunStatus, error: String? = nil, peakRSSBytes: Int? = nil) {
        update { r in
            r.status = status
            r.endedAt = Date()
            r.error = error
            if let peakRSSBytes { r.peakRSSBytes = max(r.peakRSSBytes ?? 0, peakRSSBytes) }
        }
    }

    /// Writes `loss.svg` (train and eval loss, learning rate) into `directory`; returns its path.
    @discardableResult
    public func writeLossSVG(to directory: String, title: String) -> String? {
        let path = directory + "/loss.svg"
        let svg = lock.withLock { RunCharts.lossSVG(points, title: title) }
        do { try svg.write(toFile: path, atomically: true, encoding: .utf8) } catch {
            Self.warn("cannot write \(path): \(error.localizedDescription)")
            return nil
        }
        return path
    }

    func attempt(_ body: (RunRegistry) throws -> Void) {
        guard !failed, let registry else { return }
        do { try body(registry) } catch { fail(error) }
    }

    func fail(_ error: Error) {
        failed = true
        Self.warn("the run registry cannot record this run (\(error)); training goes on, `loft runs` will not show it")
    }

    static func warn(_ text: String) {
        FileHandle.standardError.write(Data("warning: \(text)\n".utf8))
    }

    /// Bytes of a file, or of every file under a directory.
    public static func size(_ path: String) -> Int? {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: path, isDirectory: &isDir) else { return nil }
        if !isDir.boolValue { return (try? fm.attributesOfItem(atPath: path)[.size] as? Int) ?? nil }
        var total = 0
        for name in (fm.enumerator(atPath: path)?.allObjects as? [String]) ?? [] {
            total += ((try? fm.attributesOfItem(atPath: path + "/" + name)[.size] as? Int) ?? nil) ?? 0
        }
        return total
    }
}
