import Foundation
import LoftRuns

/// A run's live points as server-sent events. Each point is an event whose
/// id is its step, so a client that reconnects (EventSource sends
/// Last-Event-ID itself) is replayed every point after the last it saw,
/// from the registry: a refresh or a UI restart loses none.
///
///     id: 12
///     event: step
///     data: {"step":12,"loss":1.93,"lr":0.0002,...}
public struct RunEventStream: Sendable {
    public let registry: RunRegistry
    public let runID: String
    public var pollInterval: Double = 0.5

    public init(registry: RunRegistry, runID: String, pollInterval: Double = 0.5) {
        self.registry = registry; self.runID = runID; self.pollInterval = pollInterval
    }

    /// The step a client has seen: Last-Event-ID (a reconnect) or `?after=` (a page that drew its points).
    public static func resumeStep(lastEventID: String?, after: String?) -> Int {
        if let s = lastEventID.flatMap({ Int($0.trimmingCharacters(in: .whitespaces)) }) { return s }
        if let s = after.flatMap(Int.init) { return s }
        return Int.min
    }

    /// The step before `s` (Int.min stays: it means "from the start").
    static func before(_ s: Int) -> Int { s == Int.min ? Int.min : s - 1 }

    public static func event(_ p: MetricPoint) -> String {
        var o: [String: Any] = ["step": p.step, "time": p.time]
        for (k, _) in RunCharts.metrics { if let v = RunCharts.value(p, k), v.isFinite { o[k] = v } }
        return "id: \(p.step)\nevent: step\ndata: \(jsonText(o))\n\n"
    }

    public static func statusEvent(_ r: RunRecord) -> String {
        var o: [String: Any] = ["status": r.status.rawValue]
        if let e = r.error { o["error"] = e }
        if let t = r.totalSteps { o["total_steps"] = t }
        // No id line: a status event does not move the client's Last-Event-ID.
        return "event: status\ndata: \(jsonText(o))\n\n"
    }

    /// Everything after `after` now: the points, then the run's status.
    /// (Eval losses arrive after their step's point, so the step a client
    /// saw last is sent again when it carries an eval loss.)
    public func replay(after: Int) throws -> (text: String, lastStep: Int, status: RunRecord?) {
        let points = try registry.metrics(runID, after: Self.before(after))
        var text = "retry: 1000\n\n"
        var last = after
        for p in points where p.step > after || (p.step == after && p.evalLoss != nil) {
            text += Self.event(p)
            last = max(last, p.step)
        }
        let run = try registry.run(runID)
        if let run { text += Self.statusEvent(run) }
        return (text, last, run)
    }

    /// Writes the replay, then new points as they are recorded, until the run
    /// is over (then `event: end`) or the client goes away (`write` throws).
    public func run(after: Int, write: (String) async throws -> Void) async throws {
        let first = try replay(after: after)
        try await write(first.text)
        var last = first.lastStep
        var status = first.status?.status
        var evalSent = Set(try registry.metrics(runID, after: Self.before(last)).filter { $0.evalLoss != nil }.map(\.step))
        var idle = 0
        while true {
            guard status?.isActive ?? false else {
                try await write("event: end\ndata: {}\n\n")
                return
            }
            try await Task.sleep(nanoseconds: UInt64(pollInterval * 1e9))
            var out = ""
            for p in try registry.metrics(runID, after: Self.before(last)) {
                if p.step > last || (p.evalLoss != nil && !evalSent.contains(p.step)) {
                    out += Self.event(p)
                    last = max(last, p.step)
                    if p.evalLoss != nil { evalSent.insert(p.step) }
                }
            }
            if let r = try registry.run(runID), r.status != status {
                status = r.status
                out += Self.statusEvent(r)
            }
            idle = out.isEmpty ? idle + 1 : 0
            // A comment now and then keeps proxies from closing a quiet stream.
            if idle >= 30 { out = ": keep-alive\n\n"; idle = 0 }
            if !out.isEmpty { try await write(out) }
        }
    }
}
