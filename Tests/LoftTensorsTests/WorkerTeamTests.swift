import CLoftKernels
import Foundation
import XCTest
@testable import LoftTensors

/// The worker team (`CLoftTeam.h`) behind `parallelFor` and `parallelChunks`:
/// every index of every job runs exactly once whatever the count and thread
/// count, jobs follow each other with no index of one run with another's
/// function (the ticket's job number), a call from inside a job runs in
/// place, two threads calling at once both finish (one through GCD), and
/// workers that fell asleep wake for the next job.
final class WorkerTeamTests: XCTestCase {
    /// Runs `count` indices on `threads` threads and returns how many times each ran.
    func runCounts(_ count: Int, threads: Int) -> [Int] {
        let hits = UnsafeMutablePointer<Int>.allocate(capacity: max(count, 1))
        hits.initialize(repeating: 0, count: max(count, 1))
        defer { hits.deallocate() }
        teamRun(count, threads: threads) { i in
            // Each index is written by whoever ran it; a double run shows as 2.
            hits[i] += 1
        }
        return Array(UnsafeBufferPointer(start: hits, count: count))
    }

    func testEveryIndexRunsOnceAcrossManyJobs() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0 ..< 3000 {
            let count = Int.random(in: 0 ... 40, using: &rng)
            let threads = Int.random(in: 1 ... 4, using: &rng)
            let hits = runCounts(count, threads: threads)
            XCTAssertEqual(hits, [Int](repeating: 1, count: count), "count \(count) threads \(threads)")
        }
    }

    func testWorkIsSharedAndResultsAdd() {
        // A sum split over the team equals the serial sum (float64 exact on integers).
        let n = 1 << 16
        let values = (0 ..< n).map { _ in Double(Int.random(in: -1000 ... 1000)) }
        let partial = UnsafeMutablePointer<Double>.allocate(capacity: 8)
        defer { partial.deallocate() }
        partial.initialize(repeating: 0, count: 8)
        values.withUnsafeBufferPointer { v in
            teamRun(8, threads: 2) { c in
                var s = 0.0
                for i in stride(from: c, to: n, by: 8) { s += v[i] }
                partial[c] = s
            }
        }
        XCTAssertEqual((0 ..< 8).reduce(0.0) { $0 + partial[$1] }, values.reduce(0, +))
    }

    func testNestedCallsRunInPlace() {
        let hits = UnsafeMutablePointer<Int>.allocate(capacity: 4 * 5)
        hits.initialize(repeating: 0, count: 20)
        defer { hits.deallocate() }
        teamRun(4, threads: 2) { i in
            teamRun(5, threads: 2) { j in hits[i * 5 + j] += 1 }
        }
        XCTAssertEqual(Array(UnsafeBufferPointer(start: hits, count: 20)), [Int](repeating: 1, count: 20))
    }

    func testTwoCallersAtOnceBothFinish() {
        final class Results: @unchecked Sendable { var ok = [false, false] }
        let group = DispatchGroup()
        let results = Results()
        for caller in 0 ..< 2 {
            group.enter()
            Thread.detachNewThread {
                var ok = true
                for _ in 0 ..< 500 {
                    let hits = self.runCounts(7, threads: 3)
                    ok = ok && hits == [Int](repeating: 1, count: 7)
                }
                results.ok[caller] = ok
                group.leave()
            }
        }
        XCTAssertEqual(group.wait(timeout: .now() + 60), .success)
        XCTAssertEqual(results.ok, [true, true])
    }

    func testSleepingWorkersWakeForTheNextJob() {
        loft_team_set_spin_us(0)   // workers sleep right after each job
        defer { loft_team_set_spin_us(300) }
        for _ in 0 ..< 50 {
            XCTAssertEqual(runCounts(16, threads: 2), [Int](repeating: 1, count: 16))
            usleep(200)
        }
        // With a worker awake, work really is shared: a job whose indices each
        // wait until both have started cannot finish on one thread alone.
        loft_team_set_spin_us(300)
        let started = UnsafeMutablePointer<Int>.allocate(capacity: 1)
        started.initialize(to: 0)
        defer { started.deallocate() }
        let lock = NSLock()
        var timedOut = false
        teamRun(2, threads: 2) { _ in
            lock.lock(); started.pointee += 1; lock.unlock()
            let deadline = Date().addingTimeInterval(5)
            while true {
                lock.lock(); let both = started.pointee == 2; lock.unlock()
                if both { break }
                if Date() > deadline { lock.lock(); timedOut = true; lock.unlock(); break }
            }
        }
        XCTAssertFalse(timedOut, "both indices ran at once on two threads")
    }
}
