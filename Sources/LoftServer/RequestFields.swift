import Foundation
import LoftTemplates

/// A request body's fields, read with 400s that name the field and say what
/// it must be. JSON `null` counts as absent (clients send it for "unset").
struct RequestFields {
    let object: JinjaObject

    init(body: String) throws {
        let value: JinjaValue
        do { value = try JSONReader.parse(body) } catch let e as JSONReader.ParseError {
            throw APIError(.badRequest, "the body is not valid JSON: \(e.description)", code: "invalid_json")
        }
        guard case .object(let o) = value else {
            throw APIError(.badRequest, "the body must be a JSON object", code: "invalid_json")
        }
        object = o
    }

    init(object: JinjaObject) { self.object = object }

    subscript(key: String) -> JinjaValue? {
        if let v = object[key], v != .null { return v }
        return nil
    }

    func string(_ key: String) throws -> String? {
        guard let v = self[key] else { return nil }
        guard case .string(let s) = v else { throw APIError.badField(key, "must be a string") }
        return s
    }

    func bool(_ key: String) throws -> Bool? {
        guard let v = self[key] else { return nil }
        guard case .bool(let b) = v else { throw APIError.badField(key, "must be true or false") }
        return b
    }

    func int(_ key: String, in range: ClosedRange<Int>) throws -> Int? {
        guard let v = self[key] else { return nil }
        let n: Int
        switch v {
        case .int(let i): n = i
        case .double(let d) where d == d.rounded() && abs(d) < 9e15: n = Int(d)
        default: throw APIError.badField(key, "must be an integer")
        }
        guard range.contains(n) else { throw APIError.badField(key, "must be between \(range.lowerBound) and \(range.upperBound); got \(n)") }
        return n
    }

    func number(_ key: String, in range: ClosedRange<Double>) throws -> Double? {
        guard let v = self[key] else { return nil }
        let x: Double
        switch v {
        case .int(let i): x = Double(i)
        case .double(let d): x = d
        default: throw APIError.badField(key, "must be a number")
        }
        guard range.contains(x) else { throw APIError.badField(key, "must be between \(range.lowerBound) and \(range.upperBound); got \(x)") }
        return x
    }

    /// `stop`: a string or a list of strings, none empty.
    func stopStrings() throws -> [String] {
        guard let v = self["stop"] else { return [] }
        switch v {
        case .string(let s):
            guard !s.isEmpty else { throw APIError.badField("stop", "must not be empty") }
            return [s]
        case .array(let items):
            guard items.count <= 16 else { throw APIError.badField("stop", "at most 16 stop strings; got \(items.count)") }
            return try items.map {
                guard case .string(let s) = $0, !s.isEmpty else { throw APIError.badField("stop", "must be a list of non-empty strings") }
                return s
            }
        default: throw APIError.badField("stop", "must be a string or a list of strings")
        }
    }
}
