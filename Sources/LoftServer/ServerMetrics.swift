import Foundation
import LoftEngine

/// What the HTTP layer counts itself (statuses, time to first token as
/// clients see it, disconnects, adapter loads); the engine's own counters are
/// added when /metrics is rendered.
final class ServerMetrics: @unchecked Sendable {
    private let lock = NSLock()
    private var httpRequests: [String: Int] = [:]          // "route|status"
    private var ttftBuckets: [String: [Int]] = [:]         // per model, cumulative per bound
    private var ttftSum: [String: Double] = [:]
    private var ttftCount: [String: Int] = [:]
    private var disconnects = 0
    private var adapterLoads: [String: Int] = [:]          // "ok" / "failed"
    static let ttftBounds: [Double] = [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

    func countRequest(route: String, status: Int) {
        lock.withLock { httpRequests["\(route)|\(status)", default: 0] += 1 }
    }

    func observeFirstToken(model: String, seconds: Double) {
        lock.withLock {
            var b = ttftBuckets[model] ?? Array(repeating: 0, count: Self.ttftBounds.count)
            for (i, bound) in Self.ttftBounds.enumerated() where seconds <= bound { b[i] += 1 }
            ttftBuckets[model] = b
            ttftSum[model, default: 0] += seconds
            ttftCount[model, default: 0] += 1
        }
    }

    func countDisconnect() { lock.withLock { disconnects += 1 } }
    func countAdapterLoad(ok: Bool) { lock.withLock { adapterLoads[ok ? "ok" : "failed", default: 0] += 1 } }

    /// Prometheus text format 0.0.4.
    func render(engine: EngineMetrics?, models: [ServedModel], ready: Bool) -> String {
        var out = ""
        func family(_ name: String, _ type: String, _ help: String) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
        }
        func sample(_ name: String, _ labels: [(String, String)] = [], _ value: Double) {
            let l = labels.isEmpty ? "" : "{" + labels.map { "\($0.0)=\"\(Self.escape($0.1))\"" }.joined(separator: ",") + "}"
            let v = value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : String(value)
            out += "\(name)\(l) \(v)\n"
        }
        lock.lock(); defer { lock.unlock() }
        family("loft_ready", "gauge", "1 once the model is loaded and warmed up")
        sample("loft_ready", [], ready ? 1 : 0)
        family("loft_models_loaded", "gauge", "Models served: the base and each adapter")
        sample("loft_models_loaded", [], Double(models.count))
        family("loft_http_requests_total", "counter", "HTTP requests by route and status")
        for key in httpRequests.keys.sorted() {
            let p = key.split(separator: "|", maxSplits: 1).map(String.init)
            sample("loft_http_requests_total", [("route", p[0]), ("status", p[1])], Double(httpRequests[key]!))
        }
        family("loft_client_disconnects_total", "counter", "Requests cancelled because their client went away")
        sample("loft_client_disconnects_total", [], Double(disconnects))
        family("loft_adapter_loads_total", "counter", "Runtime adapter loads by result")
        for r in ["ok", "failed"] { sample("loft_adapter_loads_total", [("result", r)], Double(adapterLoads[r] ?? 0)) }
        family("loft_time_to_first_token_seconds", "histogram", "From request received to first generated token, per model")
        for model in ttftBuckets.keys.sorted() {
            for (i, bound) in Self.ttftBounds.enumerated() {
                sample("loft_time_to_first_token_seconds_bucket", [("model", model), ("le", String(bound))], Double(ttftBuckets[model]![i]))
            }
            sample("loft_time_to_first_token_seconds_bucket", [("model", model), ("le", "+Inf")], Double(ttftCount[model] ?? 0))
            sample("loft_time_to_first_token_seconds_sum", [("model", model)], ttftSum[model] ?? 0)
            sample("loft_time_to_first_token_seconds_count", [("model", model)], Double(ttftCount[model] ?? 0))
        }
        guard let e = engine else { return out }
        for (name, help, values) in [
            ("loft_requests_total", "Generation requests per model (base or adapter)", e.requests),
            ("loft_prompt_tokens_total", "Prompt tokens per model", e.promptTokens),
            ("loft_generation_tokens_total", "Generated tokens per model", e.generatedTokens),
        ] {
            family(name, "counter", help)
            for m in values.keys.sorted() { sample(name, [("model", m)], Double(values[m]!)) }
        }
        family("loft_engine_time_to_first_token_seconds", "summary", "Engine-side time to first token over recent requests")
        let ttft = e.timeToFirstTokenSeconds.sorted()
        for q in [0.5, 0.9, 0.99] where !ttft.isEmpty {
            sample("loft_engine_time_to_first_token_seconds", [("quantile", String(q))], ttft[min(ttft.count - 1, Int(q * Double(ttft.count)))])
        }
        sample("loft_engine_time_to_first_token_seconds_sum", [], ttft.reduce(0, +))
        sample("loft_engine_time_to_first_token_seconds_count", [], Double(ttft.count))
        family("loft_decode_tokens_per_second", "gauge", "Recent aggregate decode rate")
        sample("loft_decode_tokens_per_second", [], e.decodeTokensPerSecond)
        family("loft_queue_depth", "gauge", "Requests waiting to join the batch")
        sample("loft_queue_depth", [], Double(e.currentQueueDepth))
        family("loft_batch_size", "gauge", "Requests in the running batch")
        sample("loft_batch_size", [], Double(e.currentBatchSize))
        family("loft_max_adapters_in_one_step", "gauge", "Most distinct adapters (the base counted as one) that shared one decode step")
        sample("loft_max_adapters_in_one_step", [], Double(e.maxAdaptersInOneStep))
        family("loft_engine_steps_total", "counter", "Engine steps run")
        sample("loft_engine_steps_total", [], Double(e.steps))
        return out
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
    }
}
