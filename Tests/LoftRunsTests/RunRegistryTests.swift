import Foundation
import XCTest
@testable import LoftRuns

final class RunRegistryTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "loft-runs-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func registry() throws -> RunRegistry { try RunRegistry(path: dir + "/loft.db") }

    func testRunRoundTripsWithMetricsArtifactsAndEvals() throws {
        let reg = try registry()
        var r = RunRecord(name: "quickstart", kind: "train", status: .running)
        r.configJSON = #"{"lora":{"r":16},"learning_rate":0.001}"#
        r.baseModel = "/models/smol.gguf"
        r.outputDir = "/tmp/out"
        r.host = ProcessIdentity.hostName
        r.pid = Int(getpid())
        r.processStart = ProcessIdentity.startToken()
        r.startedAt = Date(timeIntervalSince1970: 1_700_000_000)
        r.totalSteps = 10
        r.command = ["loft", "train", "a b.yaml"]
        try reg.insert(r)
        for s in 1 ... 5 {
            try reg.recordStep(r.id, MetricPoint(step: s, loss: 3 - Double(s) * 0.1, learningRate: 1e-3, gradNorm: 0.5,
                                                 tokensPerSecond: 100, time: 1_700_000_000 + Double(s)))
        }
        try reg.recordEvalLoss(r.id, step: 5, loss: 2.4)
        try reg.addArtifact(r.id, Artifact(kind: "checkpoint", path: "/tmp/out/checkpoint-5", step: 5, bytes: 123))
        try reg.addEvalResult(r.id, EvalResult(name: "mmlu", metrics: ["acc": 0.25, "nan": .nan], reportPath: "/tmp/r.json"))

        // A second connection (another process would see the same) reads it all back.
        let again = try registry()
        let got = try XCTUnwrap(again.run(r.id))
        XCTAssertEqual(got.name, "quickstart")
        XCTAssertEqual(got.status, .running)
        XCTAssertEqual(got.command ?? [], ["loft", "train", "a b.yaml"])
        XCTAssertEqual(got.startedAt, r.startedAt)
        XCTAssertEqual(got.lastStep, 5)
        XCTAssertEqual(got.lastLoss ?? 0, 2.5, accuracy: 1e-12)
        let points = try again.metrics(r.id)
        XCTAssertEqual(points.map(\.step), [1, 2, 3, 4, 5])
        XCTAssertEqual(points[4].evalLoss, 2.4)
        XCTAssertEqual(points[4].loss ?? 0, 2.5, accuracy: 1e-12)
        XCTAssertEqual(try again.metrics(r.id, after: 3).map(\.step), [4, 5])
        XCTAssertEqual(try again.artifacts(r.id), [Artifact(kind: "checkpoint", path: "/tmp/out/checkpoint-5", step: 5, bytes: 123,
                                                            createdAt: try again.artifacts(r.id)[0].createdAt)])
        let evals = try again.evalResults(r.id)
        XCTAssertEqual(evals.map(\.name), ["mmlu"])
        XCTAssertEqual(evals[0].metrics, ["acc": 0.25])   // NaN is not stored as a number

        try again.remove(r.id)
        XCTAssertNil(try again.run(r.id))
        XCTAssertTrue(try again.metrics(r.id).isEmpty)
    }

    func testWALAndVersionedSchema() throws {
        let reg = try registry()
        let mode = try reg.pool.read { db in try String.fetchOne(db, sql: "PRAGMA journal_mode") }
        XCTAssertEqual(mode, "wal")
        let applied = try reg.pool.read { db in try RunRegistry.migrator.appliedMigrations(db) }
        XCTAssertEqual(applied, ["v1"])
    }

    func testFindByPrefixAndName() throws {
        let reg = try registry()
        let a = RunRecord(id: "20260101-000000-aaaa", name: "alpha"), b = RunRecord(id: "20260101-000000-bbbb", name: "beta")
        try reg.insert(a); try reg.insert(b)
        XCTAssertEqual(try reg.find("20260101-000000-b").id, b.id)
        XCTAssertEqual(try reg.find("alpha").id, a.id)
        XCTAssertThrowsError(try reg.find("20260101")) { XCTAssertTrue("\($0)".contains("matches 2 runs")) }
        XCTAssertThrowsError(try reg.find("nope")) { XCTAssertTrue("\($0)".contains("loft runs list")) }
    }

    /// A run whose process was killed is failed on the next open; a live one stays running.
    func testKilledRunIsMarkedFailedOnNextStart() throws {
        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/bin/sleep")
        child.arguments = ["60"]
        try child.run()
        let pid = child.processIdentifier
        var r = RunRecord(name: "victim", status: .running)
        r.host = ProcessIdentity.hostName
        r.pid = Int(pid)
        r.processStart = ProcessIdentity.startToken(pid: pid)
        try registry().insert(r)
        var alive = RunRecord(name: "me", status: .running)
        alive.host = ProcessIdentity.hostName
        alive.pid = Int(getpid())
        alive.processStart = ProcessIdentity.startToken()
        try registry().insert(alive)

        XCTAssertEqual(try registry().run(r.id)?.status, .running)
        kill(pid, SIGKILL)
        child.waitUntilExit()
        let reg = try registry()
        let failed = try XCTUnwrap(reg.run(r.id))
        XCTAssertEqual(failed.status, .failed)
        XCTAssertNotNil(failed.endedAt)
        XCTAssertTrue(failed.error?.contains("pid \(pid)") ?? false, failed.error ?? "")
        XCTAssertEqual(try reg.run(alive.id)?.status, .running)
    }

    /// A pid that now belongs to another process (its start time differs) does not pass for the run.
    func testReusedPidIsNotTheRun() throws {
        var r = RunRecord(name: "old", status: .running)
        r.host = ProcessIdentity.hostName
        r.pid = Int(getpid())
        r.processStart = "another-boot:12345"
        try registry().insert(r)
        XCTAssertEqual(try registry().run(r.id)?.status, .failed)
    }

    func testRecorderAdoptsQueuedRunAndResumeRewritesLaterSteps() throws {
        let reg = try registry()
        try reg.insert(RunRecord(id: "20260101-000000-cccc", name: "queued", status: .queued))
        var start = RunRecorder.Start(name: "quick")
        start.adoptID = "20260101-000000-cccc"
        start.outputDir = "/tmp/out-x"
        start.totalSteps = 4
        let rec = RunRecorder(start, registry: reg)
        XCTAssertEqual(rec.runID, "20260101-000000-cccc")
        for s in 1 ... 4 { rec.step(MetricPoint(step: s, loss: Double(10 - s))) }
        rec.evalLoss(step: 2, loss: 7.5)
        rec.finish(.stopped, peakRSSBytes: 1000)
        var got = try XCTUnwrap(reg.run(rec.runID))
        XCTAssertEqual(got.status, .stopped)
        XCTAssertEqual(got.pid, Int(getpid()))
        XCTAssertEqual(got.peakRSSBytes, 1000)

        // `--resume` of the same output_dir continues this entry from its checkpoint at step 2.
        let resumed = RunRecorder(start.with { $0.adoptID = nil }, registry: reg, continueLatest: true)
        XCTAssertEqual(resumed.runID, rec.runID)
        XCTAssertEqual(resumed.points.count, 4)
        resumed.resumed(at: 2)
        XCTAssertEqual(try reg.metrics(rec.runID).map(\.step), [1, 2])
        XCTAssertEqual(try reg.metrics(rec.runID)[1].evalLoss, 7.5)
        resumed.step(MetricPoint(step: 3, loss: 6.5))
        got = try XCTUnwrap(reg.run(rec.runID))
        XCTAssertEqual(got.status, .running)
        XCTAssertEqual(got.lastStep, 3)
        let dirSVG = dir + "/svg"
        try FileManager.default.createDirectory(atPath: dirSVG, withIntermediateDirectories: true)
        let path = try XCTUnwrap(resumed.writeLossSVG(to: dirSVG, title: "t"))
        let svg = try String(contentsOfFile: path, encoding: .utf8)
        XCTAssertTrue(svg.contains("data-series=\"train loss\" data-points=\"3\""), svg)
        XCTAssertTrue(svg.contains("data-series=\"eval loss\" data-points=\"1\""), svg)
    }

    func testAnUnwritableRegistryDoesNotStopTheWork() {
        let rec = RunRecorder(RunRecorder.Start(name: "x"), registry: nil)
        // LOFT_HOME may be writable here; a recorder given no registry must still accept every call.
        rec.step(MetricPoint(step: 1, loss: 1))
        rec.finish(.done)
        XCTAssertEqual(rec.points.count, 1)
    }
}

extension RunRecorder.Start {
    func with(_ edit: (inout Self) -> Void) -> Self { var c = self; edit(&c); return c }
}

final class ChartTests: XCTestCase {
    func testTicksAreRoundAndCoverTheRange() {
        for (lo, hi) in [(0.0, 1.0), (1.23, 4.56), (2e-5, 1e-3), (-3.0, 7.0), (5.0, 5.0), (0.0, 59.0)] {
            let t = SVGChart.ticks(lo, hi)
            XCTAssertLessThanOrEqual(t.lo, lo)
            XCTAssertGreaterThanOrEqual(t.hi, hi)
            let mantissa = t.step / pow(10, floor(log10(t.step)))
            XCTAssertTrue([1, 2, 5, 10].contains { abs($0 - mantissa) < 1e-9 }, "step \(t.step) for \(lo)…\(hi)")
            let n = SVGChart.values(t).count
            XCTAssertTrue((2 ... 12).contains(n), "\(n) ticks for \(lo)…\(hi)")
        }
        XCTAssertEqual(SVGChart.ticks(1, 60, integer: true).step, 20)
    }

    func testLossChartDrawsEverySeriesWithItsPoints() {
        let points = (1 ... 20).map { MetricPoint(step: $0, loss: 3 / Double($0), evalLoss: $0 % 5 == 0 ? 2 : nil, learningRate: 1e-4) }
        let svg = RunCharts.lossSVG(points, title: "run <1>")
        XCTAssertTrue(svg.hasPrefix("<svg xmlns=\"http://www.w3.org/2000/svg\""))
        XCTAssertTrue(svg.contains("data-series=\"train loss\" data-points=\"20\""))
        XCTAssertTrue(svg.contains("data-series=\"eval loss\" data-points=\"4\""))
        XCTAssertTrue(svg.contains("data-series=\"learning rate\" data-points=\"20\""))
        XCTAssertTrue(svg.contains("run &lt;1&gt;"))
        XCTAssertFalse(svg.contains("nan"))
        // The first loss point (largest) sits at the top-left corner of the plot, the last lower.
        XCTAssertTrue(RunCharts.lossSVG([], title: "x").contains("no points yet"))
    }

    func testSparklineAndConfigDiff() {
        XCTAssertEqual(Sparkline.text([1, 2, 3, 4, 5, 6, 7, 8]), "▁▂▃▄▅▆▇█")
        XCTAssertEqual(Sparkline.text([5, 5, 5]), "▄▄▄")
        XCTAssertEqual(Sparkline.text(Array(repeating: 1.0, count: 40) + [0], width: 16).count, 16)
        let diff = ConfigDiff.differing([#"{"lr":0.001,"lora":{"r":16,"alpha":32},"seed":1}"#,
                                         #"{"lr":0.0002,"lora":{"r":8,"alpha":32},"seed":1,"extra":true}"#])
        XCTAssertEqual(diff.map(\.key), ["extra", "lora.r", "lr"])
        XCTAssertEqual(diff[0].values, ["-", "true"])
        XCTAssertEqual(diff[1].values, ["16", "8"])
        // Keys as a config file spells them, not as Swift encodes them.
        let swiftKeys = ConfigDiff.differing([#"{"learningRate":0.001,"lora":{"useDoRA":false},"maxSteps":6}"#,
                                              #"{"learningRate":0.002,"lora":{"useDoRA":true},"maxSteps":6}"#])
        XCTAssertEqual(swiftKeys.map(\.key), ["learning_rate", "lora.use_do_ra"])
    }
}
