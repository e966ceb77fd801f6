import Foundation
import Hummingbird
import HTTPTypes
import XCTest
@testable import LoftServer
#if canImport(Glibc)
import Glibc
#endif

struct Reply {
    let status: Int
    let headers: HTTPFields
    let text: String
    var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] ?? [:] }
    var error: [String: Any] { json["error"] as? [String: Any] ?? [:] }
    /// The `data:` payloads of an SSE body, in order.
    var events: [String] {
        text.components(separatedBy: "\n\n").filter { !$0.isEmpty }.map { String($0.dropFirst("data: ".count)) }
    }
}

/// A minimal HTTP/1.1 client over a socket (one connection per request,
/// `Connection: close`, chunked bodies joined), so the tests need nothing
/// beyond the server's own dependencies.
struct TestClient: Sendable {
    let port: Int

    func call(_ method: HTTPRequest.Method, _ uri: String, _ body: String? = nil, key: String? = nil,
              headers extra: HTTPFields = [:]) async throws -> Reply {
        var head = "\(method.rawValue) \(uri) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        if let body { head += "Content-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n" }
        if let key { head += "Authorization: Bearer \(key)\r\n" }
        for field in extra { head += "\(field.name.rawName): \(field.value)\r\n" }
        let request = head + "\r\n" + (body ?? "")
        let port = self.port
        let raw = try await withCheckedThrowingContinuation { (c: CheckedContinuation<[UInt8], Error>) in
            DispatchQueue.global().async { c.resume(with: Result { try rawBytes(port: port, request: request, readBytes: Int.max) }) }
        }
        return try Reply(raw: raw)
    }
}

extension Reply {
    init(raw: [UInt8]) throws {
        let bytes = raw
        guard let split = (0..<max(0, bytes.count - 3)).first(where: { bytes[$0] == 13 && bytes[$0 + 1] == 10 && bytes[$0 + 2] == 13 && bytes[$0 + 3] == 10 }) else {
            throw POSIXError(.EBADMSG)
        }
        let lines = String(decoding: bytes[..<split], as: UTF8.self).components(separatedBy: "\r\n")
        let statusParts = lines[0].split(separator: " ")
        var headers = HTTPFields()
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":"), let name = HTTPField.Name(String(line[..<colon])) else { continue }
            headers.append(HTTPField(name: name, value: line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
        }
        var body = Array(bytes[(split + 4)...])
        if headers[.transferEncoding]?.lowercased() == "chunked" {
            var out: [UInt8] = [], i = 0
            while i < body.count {
                guard let lineEnd = (i..<max(i, body.count - 1)).first(where: { body[$0] == 13 && body[$0 + 1] == 10 }),
                      let size = Int(String(decoding: body[i..<lineEnd], as: UTF8.self), radix: 16) else { break }
                if size == 0 { break }
                out += body[(lineEnd + 2)..<min(body.count, lineEnd + 2 + size)]
                i = lineEnd + 2 + size + 2
            }
            body = out
        }
        self.init(status: Int(statusParts.count > 1 ? statusParts[1] : "") ?? 0, headers: headers, text: String(decoding: body, as: UTF8.self))
    }
}

/// Runs `body` against a live server on a free port with a fresh fake engine.
func withServer(_ options: ServerOptions = ServerOptions(), engine: FakeEngine = FakeEngine(),
                log: @escaping @Sendable (String) -> Void = { _ in },
                _ body: @Sendable (TestClient, FakeEngine) async throws -> Void) async throws {
    var o = options
    o.port = 0
    let server = OpenAIServer(engine: engine, options: o, log: log)
    try await serve(server) { client in try await body(client, engine) }
}

/// Runs the server's application until `body` is done.
func serve(_ server: OpenAIServer, _ body: (TestClient) async throws -> Void) async throws {
    let (ports, portContinuation) = AsyncStream<Int>.makeStream()
    let app = server.makeApplication { _, port in portContinuation.yield(port) }
    let task = Task { try await app.run() }
    var it = ports.makeAsyncIterator()
    guard let port = await it.next() else { throw POSIXError(.ECONNREFUSED) }
    do {
        try await body(TestClient(port: port))
    } catch {
        task.cancel()
        _ = try? await task.value
        throw error
    }
    task.cancel()
    _ = try? await task.value
}

func chatBody(_ model: String? = nil, _ content: String = "Hi", extra: String = "") -> String {
    let m = model.map { "\"model\": \"\($0)\", " } ?? ""
    return "{\(m)\"messages\": [{\"role\": \"user\", \"content\": \"\(content)\"}], \"temperature\": 0\(extra)}"
}

/// Sends raw bytes on a new TCP connection, reads `readBytes` bytes (or to the
/// end), then closes it: a client that goes away mid-answer.
func rawExchange(port: Int, request: String, readBytes: Int, holdSeconds: Double = 0) throws -> String {
    String(decoding: try rawBytes(port: port, request: request, readBytes: readBytes, holdSeconds: holdSeconds), as: UTF8.self)
}

func rawBytes(port: Int, request: String, readBytes: Int, holdSeconds: Double = 0) throws -> [UInt8] {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    precondition(fd >= 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    let rc = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard rc == 0 else { throw POSIXError(.ECONNREFUSED) }
    let bytes = Array(request.utf8)
    _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
    var received: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while received.count < readBytes {
        let n = recv(fd, &buffer, min(buffer.count, readBytes - received.count), 0)
        if n <= 0 { break }
        received += buffer[0..<n]
    }
    if holdSeconds > 0 { usleep(UInt32(holdSeconds * 1e6)) }
    return received
}

func httpRequest(_ method: String, _ path: String, body: String) -> String {
    "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
}

/// Polls until `condition` holds or `seconds` pass.
func eventually(_ seconds: Double, _ condition: () -> Bool) async -> Bool {
    let end = Date().addingTimeInterval(seconds)
    while Date() < end {
        if condition() { return true }
        try? await Task.sleep(nanoseconds: 20_000_000)
    }
    return condition()
}
