import Foundation
import Hummingbird
import LoftRuns

/// HTML text with its special characters escaped.
func h(_ s: String) -> String { SVGChart.escape(s) }
func h(_ s: String?) -> String { SVGChart.escape(s ?? "") }

/// A submitted form (application/x-www-form-urlencoded) or a query string.
struct FormData: Sendable {
    var pairs: [(String, String)] = []

    init(_ encoded: String) {
        for part in encoded.split(separator: "&", omittingEmptySubsequences: true) {
            let kv = part.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = Self.decode(String(kv[0]))
            let value = kv.count > 1 ? Self.decode(String(kv[1])) : ""
            pairs.append((key, value))
        }
    }

    init(pairs: [(String, String)]) { self.pairs = pairs }

    static func decode(_ s: String) -> String {
        s.replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? s
    }

    static func encode(_ s: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return s.addingPercentEncoding(withAllowedCharacters: allowed) ?? s
    }

    subscript(_ key: String) -> String? { pairs.last { $0.0 == key }?.1 }
    func all(_ key: String) -> [String] { pairs.filter { $0.0 == key }.map(\.1) }
    /// The value, trimmed; nil when empty.
    func text(_ key: String) -> String? {
        guard let v = self[key]?.trimmingCharacters(in: .whitespacesAndNewlines), !v.isEmpty else { return nil }
        return v
    }
}

extension Request {
    /// The form of a POST (bodies over 4 MB are refused).
    mutating func form() async throws -> FormData {
        let body = try await collectBody(upTo: 4 << 20)
        return FormData(String(buffer: body))
    }

    var query: FormData { FormData(uri.query ?? "") }

    func header(_ name: String) -> String? {
        let lower = name.lowercased()
        return headers.first { $0.name.canonicalName == lower }?.value
    }
}

enum Reply {
    /// Our pages load nothing from another origin, and the browser is told so.
    static let contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        + "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

    static func html(_ body: String, status: HTTPResponse.Status = .ok, headers extra: [(String, String)] = []) -> Response {
        var headers: HTTPFields = [.contentType: "text/html; charset=utf-8", .cacheControl: "no-store"]
        headers[.init("Content-Security-Policy")!] = contentSecurityPolicy
        headers[.init("X-Content-Type-Options")!] = "nosniff"
        headers[.init("Referrer-Policy")!] = "no-referrer"
        for (k, v) in extra { headers[.init(k)!] = v }
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: body)))
    }

    static func text(_ body: String, type: String = "text/plain; charset=utf-8", status: HTTPResponse.Status = .ok) -> Response {
        var headers: HTTPFields = [.contentType: type, .cacheControl: "no-store"]
        headers[.init("X-Content-Type-Options")!] = "nosniff"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: body)))
    }

    static func json(_ object: Any, status: HTTPResponse.Status = .ok) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return text(String(decoding: data, as: UTF8.self), type: "application/json", status: status)
    }

    static func redirect(_ location: String, headers extra: [(String, String)] = []) -> Response {
        var headers: HTTPFields = [.location: location]
        for (k, v) in extra { headers[.init(k)!] = v }
        return Response(status: .seeOther, headers: headers)
    }
}

/// JSON text of a Foundation object (for SSE data lines and the script).
func jsonText(_ object: Any) -> String {
    let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("null".utf8)
    return String(decoding: data, as: UTF8.self)
}

/// A number for display: 4 significant digits, exponent for small rates.
func num(_ x: Double?) -> String {
    guard let x, x.isFinite else { return "–" }
    if x != 0 && (abs(x) < 1e-3 || abs(x) >= 1e6) { return String(format: "%.2e", x) }
    return String(format: "%.4g", x)
}

func bytesText(_ b: Int?) -> String {
    guard let b else { return "–" }
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var v = Double(b), i = 0
    while v >= 1024 && i < units.count - 1 { v /= 1024; i += 1 }
    return i == 0 ? "\(b) B" : String(format: "%.1f %@", v, units[i])
}

func dateText(_ d: Date?) -> String {
    guard let d else { return "–" }
    let f = DateFormatter()
    f.locale = Locale(identifier: "en_US_POSIX")
    f.dateFormat = "yyyy-MM-dd HH:mm:ss"
    return f.string(from: d)
}

func durationText(_ seconds: Double) -> String {
    let s = Int(max(0, seconds))
    if s >= 3600 { return String(format: "%dh %02dm", s / 3600, s / 60 % 60) }
    if s >= 60 { return String(format: "%dm %02ds", s / 60, s % 60) }
    return "\(s)s"
}
