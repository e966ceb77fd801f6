import Foundation
import Hummingbird
import NIOCore

/// Outermost: turns every error into OpenAI's shape, counts the status per
/// route and logs one line per request once its body has been written.
struct AccessLogMiddleware: RouterMiddleware {
    typealias Context = ServeRequestContext
    let server: OpenAIServer

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var response: Response
        do {
            response = try await next(request, context)
        } catch {
            response = try APIError.from(error).response(from: request, context: context)
        }
        let path = request.uri.path
        let route = OpenAIServer.routes.contains(path) ? path
            : path.hasPrefix("/v1/adapters/") ? "/v1/adapters/:name" : path.hasPrefix("/v1/models/") ? "/v1/models/:model" : "other"
        let status = response.status.code
        let method = request.method.rawValue
        let peer = context.channel?.remoteAddress?.ipAddress ?? "-"
        let info = context.info
        let server = self.server
        let body = response.body
        response.body = ResponseBody(contentLength: body.contentLength) { writer in
            var outcome = ""
            defer {
                let seconds = Date().timeIntervalSince(info.started)
                server.metrics.countRequest(route: route, status: status)
                if path != "/health" && path != "/metrics" {
                    server.log("\(Self.timestamp()) \(peer) \(method) \(path) \(status)\(info.summary) \(String(format: "%.3fs", seconds))\(outcome)")
                }
            }
            do { try await body.write(writer) } catch { outcome = " client-gone"; throw error }
        }
        return response
    }

    static func timestamp() -> String {
        let f = ISO8601DateFormatter()
        return f.string(from: Date())
    }
}

/// API key on every route but /health (and CORS preflights); the admin key,
/// when set, for adapter administration. Keys come as `Authorization: Bearer KEY`.
struct AuthMiddleware: RouterMiddleware {
    typealias Context = ServeRequestContext
    let apiKey: String?
    let adminKey: String?

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        // Decode before deciding, so `/v1/%61dapters` is treated as what the router will match.
        let path = (request.uri.path.removingPercentEncoding ?? request.uri.path).lowercased()
        if path == "/health" || request.method == .options { return try await next(request, context) }
        let presented = Self.bearer(request)
        let isAdmin = adminKey.map { k in presented.map { Self.same($0, k) } ?? false } ?? false
        if path.contains("adapter"), adminKey != nil {
            if isAdmin { return try await next(request, context) }
            if let p = presented, let k = apiKey, Self.same(p, k) {
                throw APIError(.forbidden, "adapter administration needs the admin key (--admin-key), not the API key", code: "admin_key_required")
            }
            throw APIError(.unauthorized, "adapter administration needs the admin key: send `Authorization: Bearer ADMIN_KEY`", code: "invalid_api_key")
        }
        if let k = apiKey, !isAdmin, !(presented.map { Self.same($0, k) } ?? false) {
            throw APIError(.unauthorized, presented == nil
                           ? "this server needs an API key: send `Authorization: Bearer KEY`"
                           : "the API key is wrong", code: "invalid_api_key")
        }
        return try await next(request, context)
    }

    static func bearer(_ request: Request) -> String? {
        guard let h = request.headers[.authorization] else { return nil }
        let parts = h.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
        return parts[1].trimmingCharacters(in: .whitespaces)
    }

    /// Compares in time that depends only on the lengths.
    static func same(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        var diff = UInt8(x.count == y.count ? 0 : 1)
        for i in 0..<max(x.count, y.count) { diff |= (i < x.count ? x[i] : 0) ^ (i < y.count ? y[i] : 0) }
        return diff == 0
    }
}

/// With several allowed origins, Hummingbird's CORS middleware echoes any
/// Origin; this refuses the ones not listed before it gets there.
struct OriginCheckMiddleware: RouterMiddleware {
    typealias Context = ServeRequestContext
    let allowed: [String]

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if let origin = request.headers[.origin], !allowed.contains("*"), !allowed.contains(origin) {
            if request.method == .options {
                throw APIError(.forbidden, "the origin \(origin) is not allowed (--cors-origin)", code: "origin_not_allowed")
            }
            var response = try await next(request, context)
            response.headers[.accessControlAllowOrigin] = nil
            response.headers[.accessControlAllowCredentials] = nil
            return response
        }
        return try await next(request, context)
    }
}
