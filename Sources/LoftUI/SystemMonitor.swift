import Foundation
import LoftRuns

/// CPU and memory use of this machine over the last minutes, sampled from
/// /proc every few seconds while the UI runs (and GPU memory when
/// /proc/driver/nvidia says a GPU is present and the UI can read it).
public final class SystemMonitor: @unchecked Sendable {
    public struct Sample: Sendable {
        public var time: Double
        public var cpuPercent: Double
        public var memoryUsedBytes: Double
        public var memoryTotalBytes: Double
    }

    private var samples: [Sample] = []
    private var previous: (busy: Double, total: Double)?
    private let lock = NSLock()
    public let capacity: Int

    public init(capacity: Int = 360) { self.capacity = capacity }

    public var history: [Sample] { lock.withLock { samples } }

    /// Takes one sample (call every few seconds).
    public func sample() {
        let cpu = Self.cpuTimes()
        let mem = Self.memory()
        lock.withLock {
            var percent = 0.0
            if let cpu, let prev = previous, cpu.total > prev.total {
                percent = 100 * (cpu.busy - prev.busy) / (cpu.total - prev.total)
            }
            previous = cpu
            guard let mem else { return }
            samples.append(Sample(time: Date().timeIntervalSince1970, cpuPercent: percent, memoryUsedBytes: mem.used, memoryTotalBytes: mem.total))
            if samples.count > capacity { samples.removeFirst(samples.count - capacity) }
        }
    }

    /// Aggregate CPU times from /proc/stat: (busy, total) in ticks.
    static func cpuTimes() -> (busy: Double, total: Double)? {
        guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("cpu ") }) else { return nil }
        let v = line.split(separator: " ").dropFirst().compactMap { Double($0) }
        guard v.count >= 4 else { return nil }
        let idle = v[3] + (v.count > 4 ? v[4] : 0)
        let total = v.prefix(8).reduce(0, +)
        return (total - idle, total)
    }

    /// (used, total) bytes from /proc/meminfo (used = total − available).
    static func memory() -> (used: Double, total: Double)? {
        guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) else { return nil }
        var total = 0.0, available = 0.0
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            guard parts.count >= 2, let kb = Double(parts[1]) else { continue }
            if parts[0] == "MemTotal:" { total = kb * 1024 }
            if parts[0] == "MemAvailable:" { available = kb * 1024 }
        }
        return total > 0 ? (total - available, total) : nil
    }

    /// The two charts, x in seconds before now.
    public func charts() -> (cpu: String, memory: String) {
        let s = history
        let now = Date().timeIntervalSince1970
        let cpu = SVGChart(title: "CPU use (all cores)", xLabel: "seconds ago", yLabel: "%", series: [
            ChartSeries(name: "CPU %", points: s.map { ($0.time - now, $0.cpuPercent) }, color: SVGChart.palette[0]),
        ], width: 640, height: 240).render()
        let gib = 1024.0 * 1024 * 1024
        let mem = SVGChart(title: "Memory", xLabel: "seconds ago", yLabel: "GiB", series: [
            ChartSeries(name: "used", points: s.map { ($0.time - now, $0.memoryUsedBytes / gib) }, color: SVGChart.palette[1]),
            ChartSeries(name: "total", points: s.map { ($0.time - now, $0.memoryTotalBytes / gib) }, color: "#999999", dashed: true),
        ], width: 640, height: 240).render()
        return (cpu, mem)
    }
}
