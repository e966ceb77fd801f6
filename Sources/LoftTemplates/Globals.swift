import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The global functions a chat template sees: jinja2's (`range`, `namespace`,
/// `dict`) and the ones transformers adds (`raise_exception`, `strftime_now`).
enum Globals {
    static func install(into frame: Frame, clock: @escaping () -> Date) {
        frame.variables["range"] = .function(Function(name: "range") { a in
            let ints = try a.positional.map { v -> Int in
                guard case .int(let i)? = v.numeric else { throw EvalError(message: "range() integer argument expected, got \(v.typeName)") }
                return i
            }
            var start = 0, stop = 0, step = 1
            switch ints.count {
            case 1: stop = ints[0]
            case 2: start = ints[0]; stop = ints[1]
            case 3: start = ints[0]; stop = ints[1]; step = ints[2]
            default: throw EvalError(message: "range expected 1 to 3 arguments, got \(ints.count)")
            }
            guard step != 0 else { throw EvalError(message: "range() arg 3 must not be zero") }
            let count = (Double(stop) - Double(start)) / Double(step)
            guard count <= 1_000_000 else { throw EvalError(message: "range() is limited to a million items") }
            return .list(stride(from: start, to: stop, by: step).map { .int($0) })
        })
        frame.variables["namespace"] = .function(Function(name: "namespace") { a in
            var d = OrderedDict()
            for v in a.positional {
                guard case .dict(let given) = v else { throw EvalError(message: "namespace() positional argument must be a dict") }
                for (k, x) in given.pairs { d[k] = x }
            }
            for (k, v) in a.keyword { d[k] = v }
            for k in d.keys where k.hasPrefix("_") {
                throw EvalError(message: "Chat templates cannot store underscore-prefixed attributes on a namespace, but got '\(k)'. Please rename the attribute.")
            }
            return .namespace(Namespace(d))
        })
        frame.variables["dict"] = .function(Function(name: "dict") { a in
            var d = OrderedDict()
            for v in a.positional {
                switch v {
                case .dict(let given): for (k, x) in given.pairs { d[k] = x }
                case .list(let pairs):
                    for p in pairs {
                        guard let kv = p.sequenceItems, kv.count == 2 else { throw EvalError(message: "dict() needs key/value pairs") }
                        d[kv[0].pythonString] = kv[1]
                    }
                default: throw EvalError(message: "dict() argument must be a mapping or pairs")
                }
            }
            for (k, v) in a.keyword { d[k] = v }
            return .dict(d)
        })
        frame.variables["raise_exception"] = .function(Function(name: "raise_exception") { a in
            throw RaisedError(message: a.argument(0, "message")?.pythonString ?? "")
        })
        frame.variables["strftime_now"] = .function(Function(name: "strftime_now") { a in
            guard let format = a.argument(0, "format") else { throw EvalError(message: "strftime_now() needs a format") }
            return .string(strftime(format.pythonString, clock()))
        })
    }

    /// C strftime in the local time zone and the C locale, as Python's datetime.now().strftime.
    static func strftime(_ format: String, _ date: Date) -> String {
        var t = time_t(date.timeIntervalSince1970.rounded(.down))
        var broken = tm()
        localtime_r(&t, &broken)
        var buffer = [Int8](repeating: 0, count: 512)
        let n = Foundation.strftime(&buffer, buffer.count, format, &broken)
        if n == 0 && !format.isEmpty { return "" }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
