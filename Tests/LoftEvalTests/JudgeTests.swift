import Foundation
#if canImport(Glibc)
import Glibc
#endif
import XCTest
@testable import LoftEval

/// A loopback HTTP server answering OpenAI chat completions from a script.
final class StubJudgeServer: @unchecked Sendable {
    let socketFD: Int32
    let port: UInt16
    let reply: (String) -> String
    private(set) var requests = 0
    private let lock = NSLock()

    init(reply: @escaping (String) -> String) throws {
        self.reply = reply
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        guard bound == 0, listen(fd, 16) == 0 else { close(fd); throw EvalError.judge("stub server cannot listen") }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        socketFD = fd
        port = UInt16(bigEndian: addr.sin_port)
        let thread = Thread { [self] in self.serve() }
        thread.start()
    }

    var baseURL: String { "http://127.0.0.1:\(port)/v1" }

    func stop() { shutdown(socketFD, Int32(SHUT_RDWR)); close(socketFD) }

    private func serve() {
        while true {
            let client = accept(socketFD, nil, nil)
            if client < 0 { return }
            var data = [UInt8]()
            var buffer = [UInt8](repeating: 0, count: 65536)
            var expected = Int.max
            while data.count < expected {
                let n = read(client, &buffer, buffer.count)
                if n <= 0 { break }
                data += buffer[0 ..< n]
                if let headerEnd = findHeaderEnd(data) {
                    let header = String(decoding: data[..<headerEnd], as: UTF8.self).lowercased()
                    let length = header.split(separator: "\r\n").first { $0.hasPrefix("content-length:") }
                        .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
                    expected = headerEnd + 4 + length
                }
            }
            let body = findHeaderEnd(data).map { Array(data[($0 + 4)...]) } ?? []
            lock.lock(); requests += 1; lock.unlock()
            var content = ""
            if let o = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any],
               let messages = o["messages"] as? [[String: Any]], let user = messages.last?["content"] as? String {
                content = reply(user)
            }
            let answer = try! JSONSerialization.data(withJSONObject: ["id": "x", "object": "chat.completion",
                "choices": [["index": 0, "message": ["role": "assistant", "content": content], "finish_reason": "stop"]]])
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: \(answer.count)\r\nConnection: close\r\n\r\n"
            let out = Array(head.utf8) + [UInt8](answer)
            _ = out.withUnsafeBytes { write(client, $0.baseAddress, out.count) }
            close(client)
        }
    }

    private func findHeaderEnd(_ d: [UInt8]) -> Int? {
        guard d.count >= 4 else { return nil }
        for i in 0 ... d.count - 4 where d[i] == 13 && d[i + 1] == 10 && d[i + 2] == 13 && d[i + 3] == 10 { return i }
        return nil
    }
}

final class JudgeTests: XCTestCase {
    /// The script: q0 the model's answer is better (in both orders), q1 the
    /// judge always picks the first answer (position bias), q2 a tie, q3 the
    /// baseline is better.
    static func script(_ prompt: String) -> String {
        let a = prompt.components(separatedBy: "[Answer A begins]\n")[1].components(separatedBy: "\n[Answer A ends]")[0]
        if prompt.contains("q1") { return "Both fine, but the first reads better.\n[[A]]" }
        if prompt.contains("q2") { return "Equally good. [[C]]" }
        // Otherwise the answer marked GOOD wins, wherever it stands; mention [[B]] earlier to test "last verdict wins".
        return "Not [[B]] at first sight, but on reflection: " + (a.contains("GOOD") ? "[[A]]" : "[[B]]")
    }

    func testBothOrdersTiesCacheAndCalls() throws {
        let server = try StubJudgeServer(reply: Self.script)
        defer { server.stop() }
        let cache = FileManager.default.temporaryDirectory.appendingPathComponent("loft-judge-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: cache) }
        let judge = try JudgeClient(baseURL: server.baseURL, model: "stub", cacheDirectory: cache.path)
        let questions = ["q0", "q1", "q2", "q3"]
        let tuned = ["GOOD answer", "answer one", "an answer", "weak answer"]
        let base = ["weak answer", "answer two", "answer", "GOOD answer"]
        let result = try judge.compare(model: "tuned", answers: tuned, against: "base", baseline: base, questions: questions,
                                       bootstrap: Bootstrap(resamples: 2000, seed: 7))
        XCTAssertEqual(result.outcomes, ["win", "tie", "tie", "loss"])
        XCTAssertEqual(result.verdicts[1].first, "A"); XCTAssertEqual(result.verdicts[1].second, "A")
        XCTAssertEqual(result.wins, 1); XCTAssertEqual(result.ties, 2); XCTAssertEqual(result.losses, 1)
        XCTAssertEqual(result.winRate, 0.5, accuracy: 1e-12)
        XCTAssertEqual(result.calls, 8); XCTAssertEqual(server.requests, 8)
        // The interval of a mean of {1, .5, .5, 0} over 4 items spans below and above one half.
        XCTAssertLessThan(result.low, 0.5); XCTAssertGreaterThan(result.high, 0.5)
        XCTAssertGreaterThanOrEqual(result.low, 0); XCTAssertLessThanOrEqual(result.high, 1)

        // Asked again: every answer comes from the disk cache, no new calls.
        let again = try JudgeClient(baseURL: server.baseURL + "/", model: "stub", cacheDirectory: cache.path)
        let second = try again.compare(model: "tuned", answers: tuned, against: "base", baseline: base, questions: questions,
                                       bootstrap: Bootstrap(resamples: 2000, seed: 7))
        XCTAssertEqual(second.outcomes, result.outcomes)
        XCTAssertEqual(second.calls, 0); XCTAssertEqual(second.cacheHits, 8); XCTAssertEqual(server.requests, 8)
    }

    func testVerdictParsingAndErrors() throws {
        XCTAssertEqual(JudgeClient.parseVerdict("[[A]] no wait [[B]]"), "B")
        XCTAssertEqual(JudgeClient.parseVerdict("no verdict"), "C")
        XCTAssertThrowsError(try JudgeClient(baseURL: "ftp://x", model: "m"))
        // Nothing listens on this port: the error says so instead of crashing.
        let judge = try JudgeClient(baseURL: "http://127.0.0.1:9/v1", model: "m")
        XCTAssertThrowsError(try judge.compare(model: "a", answers: ["x"], against: "b", baseline: ["y"], questions: ["q"], bootstrap: Bootstrap())) {
            XCTAssertTrue("\($0)".contains("cannot reach") || "\($0)".contains("HTTP"), "\($0)")
        }
    }
}
