import Foundation
import LoftData

/// Who may use the UI. On a loopback address anyone on this machine may
/// (as with a terminal); on any other address a password set on first start
/// (stored as PBKDF2-HMAC-SHA256) opens a session cookie. Every form carries
/// a CSRF token either way, so another site cannot post to the UI.
public final class UIAuth: @unchecked Sendable {
    public let requiresLogin: Bool
    let passwordRecord: String?
    private var sessions: [String: String] = [:]   // session token → its CSRF token
    private let lock = NSLock()
    /// On loopback there are no sessions: one CSRF token per UI process.
    let processCSRF = UIAuth.randomToken()
    static let cookieName = "loft_session"

    public init(requiresLogin: Bool, passwordRecord: String?) {
        self.requiresLogin = requiresLogin
        self.passwordRecord = passwordRecord
    }

    public static func isLoopback(_ host: String) -> Bool {
        host == "127.0.0.1" || host == "::1" || host == "localhost" || host.hasPrefix("127.")
    }

    // MARK: Passwords

    public static let iterations = 20_000

    /// "pbkdf2-sha256$ITERATIONS$SALT_HEX$HASH_HEX"
    public static func hashPassword(_ password: String, salt: [UInt8] = randomBytes(16), iterations: Int = iterations) -> String {
        let dk = pbkdf2(password: Array(password.utf8), salt: salt, iterations: iterations)
        return "pbkdf2-sha256$\(iterations)$\(hexString(salt))$\(hexString(dk))"
    }

    public static func verify(_ password: String, record: String) -> Bool {
        let parts = record.split(separator: "$").map(String.init)
        guard parts.count == 4, parts[0] == "pbkdf2-sha256", let iters = Int(parts[1]), let salt = fromHex(parts[2]) else { return false }
        let got = hexString(pbkdf2(password: Array(password.utf8), salt: salt, iterations: iters))
        // Compared in constant time.
        return got.utf8.count == parts[3].utf8.count && zip(got.utf8, parts[3].utf8).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
    }

    static func hmac(key: [UInt8], _ message: [UInt8]) -> [UInt8] {
        var k = key
        if k.count > 64 { var s = SHA256(); s.update(k); k = s.finalize() }
        k += [UInt8](repeating: 0, count: 64 - k.count)
        var inner = SHA256(); inner.update(k.map { $0 ^ 0x36 } + message)
        var outer = SHA256(); outer.update(k.map { $0 ^ 0x5c } + inner.finalize())
        return outer.finalize()
    }

    /// PBKDF2 (RFC 8018) with HMAC-SHA256, one 32-byte block.
    static func pbkdf2(password: [UInt8], salt: [UInt8], iterations: Int) -> [UInt8] {
        var u = hmac(key: password, salt + [0, 0, 0, 1])
        var out = u
        for _ in 1 ..< max(1, iterations) {
            u = hmac(key: password, u)
            for i in 0 ..< out.count { out[i] ^= u[i] }
        }
        return out
    }

    static func fromHex(_ s: String) -> [UInt8]? {
        let chars = Array(s.utf8)
        guard chars.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        for i in stride(from: 0, to: chars.count, by: 2) {
            guard let b = UInt8(String(decoding: chars[i ..< i + 2], as: UTF8.self), radix: 16) else { return nil }
            out.append(b)
        }
        return out
    }

    public static func randomBytes(_ n: Int) -> [UInt8] {
        var g = SystemRandomNumberGenerator()
        return (0 ..< n).map { _ in UInt8.random(in: 0 ... 255, using: &g) }
    }

    static func randomToken() -> String { hexString(randomBytes(24)) }

    // MARK: Sessions

    /// A new session after a correct password: (cookie value, its CSRF token).
    func login(password: String) -> String? {
        guard let record = passwordRecord, Self.verify(password, record: record) else { return nil }
        let token = Self.randomToken()
        lock.withLock { sessions[token] = Self.randomToken() }
        return token
    }

    func logout(cookie: String?) { if let cookie { _ = lock.withLock { sessions.removeValue(forKey: cookie) } } }

    /// The CSRF token for this request's session, or nil when it must log in.
    func csrf(cookieHeader: String?) -> String? {
        guard requiresLogin else { return processCSRF }
        guard let token = Self.cookie(Self.cookieName, in: cookieHeader) else { return nil }
        return lock.withLock { sessions[token] }
    }

    static func cookie(_ name: String, in header: String?) -> String? {
        guard let header else { return nil }
        for part in header.split(separator: ";") {
            let kv = part.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1)
            if kv.count == 2 && kv[0] == name { return String(kv[1]) }
        }
        return nil
    }
}

/// Bytes as lowercase hex (SHA256.hex hashes its input first).
func hexString(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }
