import Foundation
import Hummingbird
import LoftEngine
import LoftTemplates

/// An error in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`
/// with the HTTP status clients branch on (the `openai` package maps 400, 401,
/// 403, 404, 409, 413, 422, 429 and 5xx to its own exception classes).
public struct APIError: Error, HTTPResponseError, CustomStringConvertible {
    public var status: HTTPResponse.Status
    public var message: String
    public var type: String
    public var param: String?
    public var code: String?
    public var retryAfterSeconds: Int?

    public init(_ status: HTTPResponse.Status, _ message: String, type: String? = nil, param: String? = nil,
                code: String? = nil, retryAfterSeconds: Int? = nil) {
        self.status = status; self.message = message; self.param = param; self.code = code
        self.retryAfterSeconds = retryAfterSeconds
        self.type = type ?? Self.defaultType(status)
    }

    public var description: String { "\(status.code) \(message)" }

    static func defaultType(_ status: HTTPResponse.Status) -> String {
        switch status.code {
        case 401: return "authentication_error"
        case 403: return "permission_error"
        case 404: return "not_found_error"
        case 429: return "rate_limit_error"
        case 500...: return "server_error"
        default: return "invalid_request_error"
        }
    }

    /// 400 naming the field and what it must be.
    static func badField(_ field: String, _ message: String) -> APIError {
        APIError(.badRequest, "`\(field)`: \(message)", param: field, code: "invalid_value")
    }

    var json: JinjaValue {
        ["error": .object(JinjaObject([
            ("message", .string(message)), ("type", .string(type)),
            ("param", param.map(JinjaValue.string) ?? .null), ("code", code.map(JinjaValue.string) ?? .null),
        ]))]
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var headers: HTTPFields = [.contentType: "application/json"]
        if let s = retryAfterSeconds { headers[.retryAfter] = String(s) }
        if status == .unauthorized { headers[.wwwAuthenticate] = "Bearer" }
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: json.jsonText() + "\n")))
    }

    /// The status and shape each engine refusal has on the wire.
    static func from(_ error: EngineError, promptField: String) -> APIError {
        switch error {
        case .unknownModel:
            return APIError(.notFound, error.description, param: "model", code: "model_not_found")
        case .promptTooLong:
            return APIError(.contentTooLarge, error.description, param: promptField, code: "context_length_exceeded")
        case .queueFull(let s):
            return APIError(.tooManyRequests, error.description, code: "queue_full", retryAfterSeconds: max(1, s))
        case .invalidRequest(let field, let message):
            return APIError(.badRequest, "`\(field)`: \(message)", param: field, code: "invalid_value")
        case .adapterRejected:
            return APIError(.badRequest, error.description, code: "adapter_rejected")
        case .notReady:
            return APIError(.serviceUnavailable, error.description, code: "model_loading", retryAfterSeconds: 5)
        }
    }

    /// Any error a handler threw, as the client will see it.
    static func from(_ error: Error, promptField: String = "messages") -> APIError {
        switch error {
        case let e as APIError: return e
        case let e as EngineError: return from(e, promptField: promptField)
        case let e as HTTPError:
            switch e.status {
            case .contentTooLarge:
                return APIError(.contentTooLarge, "the request body is over the server's limit (--max-body-mb)", code: "request_too_large")
            case .notFound:
                return APIError(.notFound, "no such route; the API is under /v1 (GET /v1/models lists the models)", code: "not_found")
            default:
                return APIError(e.status, e.body ?? e.status.reasonPhrase)
            }
        case is CancellationError:
            return APIError(.init(code: 499, reasonPhrase: "Client Closed Request"), "the request was cancelled", code: "cancelled")
        default:
            return APIError(.internalServerError, "internal error: \(error)", code: "internal_error")
        }
    }
}
