import Foundation

// Constrained decoding for JSON: a byte-level pushdown automaton (the JSON
// grammar, narrowed by a schema) driven over each token's bytes. A token is
// allowed when all its bytes keep the output a prefix of a valid document.
// The vocabulary is a byte trie, so a step walks each shared prefix once and
// prunes every token under a byte the automaton refuses.
//
// Schema subset (docs/engine.md): type (one or a list) object, array, string,
// number, integer, boolean, null; properties, required, additionalProperties
// (true, false or a schema), items, enum, const. Annotations (title,
// description, $schema, $id, $comment, default, examples) are ignored; any
// other keyword is refused with its name, never silently ignored.

/// The tokens' bytes as a trie (special tokens and empty tokens left out).
final class VocabularyIndex: @unchecked Sendable {
    /// Children of node i: childByte/childNode[childStart[i] ..< childStart[i + 1]].
    let childStart: [Int32]
    let childByte: [UInt8]
    let childNode: [Int32]
    /// Tokens whose bytes end at node i.
    let tokensAt: [[Int32]]
    let size: Int
    /// Each token's bytes (nil for special tokens).
    let bytes: [[UInt8]?]

    init(size: Int, bytes: (Int) -> [UInt8]?) {
        self.size = size
        var children: [[UInt8: Int]] = [[:]]
        var ends: [[Int32]] = [[]]
        var all = [[UInt8]?](repeating: nil, count: size)
        for id in 0 ..< size {
            guard let b = bytes(id), !b.isEmpty else { continue }
            all[id] = b
            var node = 0
            for byte in b {
                if let next = children[node][byte] { node = next; continue }
                children.append([:]); ends.append([])
                children[node][byte] = children.count - 1
                node = children.count - 1
            }
            ends[node].append(Int32(id))
        }
        var start: [Int32] = [], cb: [UInt8] = [], cn: [Int32] = []
        for c in children {
            start.append(Int32(cb.count))
            for (byte, node) in c.sorted(by: { $0.key < $1.key }) { cb.append(byte); cn.append(Int32(node)) }
        }
        start.append(Int32(cb.count))
        childStart = start; childByte = cb; childNode = cn; tokensAt = ends; self.bytes = all
    }
}

/// A schema node: which JSON kinds a value may take and what they hold.
struct SchemaNode {
    struct Kinds: OptionSet {
        let rawValue: UInt8
        static let object = Kinds(rawValue: 1), array = Kinds(rawValue: 2), string = Kinds(rawValue: 4)
        static let number = Kinds(rawValue: 8), integer = Kinds(rawValue: 16), boolean = Kinds(rawValue: 32)
        static let null = Kinds(rawValue: 64)
        static let all: Kinds = [.object, .array, .string, .number, .boolean, .null]
    }
    var kinds: Kinds = .all
    /// enum / const: the value is one of these serialized texts.
    var literals: [[UInt8]]?
    var properties: [(key: [UInt8], node: Int)] = []
    var required: UInt64 = 0
    /// The node for properties not in `properties`; nil = none allowed.
    var additional: Int? = 0
    var items = 0
}

/// The compiled grammar of one request (shared by its choices).
final class JSONGrammar: @unchecked Sendable {
    let nodes: [SchemaNode]
    let root: Int
    let vocabulary: VocabularyIndex
    /// Most whitespace bytes in a row (models can loop on whitespace forever).
    static let maxWhitespaceRun = 16

    init(nodes: [SchemaNode], root: Int, vocabulary: VocabularyIndex) {
        self.nodes = nodes; self.root = root; self.vocabulary = vocabulary
    }

    func start() -> JSONGrammarState { JSONGrammarState(mode: .value(root)) }

    /// The state after all of `bytes`, or nil when one is refused.
    func feed(_ state: JSONGrammarState, _ bytes: [UInt8]) -> JSONGrammarState? {
        var s = state
        for b in bytes { guard step(&s, b) else { return nil } }
        return s
    }

    func advance(_ state: JSONGrammarState, token: Int32) -> JSONGrammarState? {
        vocabulary.bytes[Int(token)].flatMap { feed(state, $0) }
    }

    /// The document is complete: nothing may follow.
    func isComplete(_ s: JSONGrammarState) -> Bool { if case .done = s.mode { return true }; return false }

    /// The output may end here (a complete document; or a top-level number
    /// or literal that could also go on): stop tokens are allowed.
    func canEnd(_ s: JSONGrammarState) -> Bool {
        guard s.stack.isEmpty else { return false }
        switch s.mode {
        case .done: return true
        case .number(_, let p): return numberCanEnd(p)
        case .literal(let node, _): return literals(node).contains(s.literal)
        default: return false
        }
    }

    /// Which tokens keep the output valid from `state` (a trie walk).
    func allowedTokens(_ state: JSONGrammarState) -> [Bool] {
        var allowed = [Bool](repeating: false, count: vocabulary.size)
        let v = vocabulary
        func walk(_ node: Int, _ s: JSONGrammarState) {
            for i in Int(v.childStart[node]) ..< Int(v.childStart[node + 1]) {
                var next = s
                guard step(&next, v.childByte[i]) else { continue }
                let child = Int(v.childNode[i])
                for t in v.tokensAt[child] { allowed[Int(t)] = true }
                walk(child, next)
            }
        }
        walk(0, state)
        return allowed
    }

    // MARK: the automaton

    /// Advances by one byte; false when the byte is not allowed here.
    func step(_ s: inout JSONGrammarState, _ b: UInt8) -> Bool {
        switch s.mode {
        case .done:
            return false
        case .value(let node):
            if isSpace(b) { return space(&s) }
            s.whitespace = 0
            return startValue(&s, node, b)
        case .string(let isKey, let escape):
            return stringByte(&s, isKey: isKey, escape: escape, b)
        case .number(let node, let phase):
            if let next = numberStep(phase, b, integer: !nodes[node].kinds.contains(.number)) {
                s.mode = .number(node, next)
                return true
            }
            guard numberCanEnd(phase) else { return false }
            valueEnded(&s)
            return step(&s, b)
        case .literal(let node, let matched):
            let alts = literals(node)
            if alts.contains(where: { $0.count > s.literal.count && $0[s.literal.count] == b && $0.starts(with: s.literal) }) {
                s.literal.append(b)
                if !alts.contains(where: { $0.count > s.literal.count && $0.starts(with: s.literal) }) {
                    s.literal = []
                    valueEnded(&s)
                } else {
                    s.mode = .literal(node, matched + 1)
                }
                return true
            }
            guard alts.contains(where: { $0 == s.literal }) else { return false }
            s.literal = []
            valueEnded(&s)
            return step(&s, b)
        case .object(let expect):
            if isSpace(b) { return space(&s) }
            s.whitespace = 0
            return objectByte(&s, expect, b)
        case .array(let expect):
            if isSpace(b) { return space(&s) }
            s.whitespace = 0
            return arrayByte(&s, expect, b)
        }
    }

    private func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x0A || b == 0x09 || b == 0x0D }

    private func space(_ s: inout JSONGrammarState) -> Bool {
        guard s.whitespace < Self.maxWhitespaceRun, !s.stack.isEmpty || !isTopLevelStart(s) else { return false }
        s.whitespace += 1
        return true
    }

    private func isTopLevelStart(_ s: JSONGrammarState) -> Bool {
        if case .value = s.mode, s.stack.isEmpty { return true }
        return false
    }

    private func literals(_ node: Int) -> [[UInt8]] {
        if let l = nodes[node].literals { return l }
        var out: [[UInt8]] = []
        if nodes[node].kinds.contains(.boolean) { out += [Array("true".utf8), Array("false".utf8)] }
        if nodes[node].kinds.contains(.null) { out.append(Array("null".utf8)) }
        return out
    }

    private func startValue(_ s: inout JSONGrammarState, _ node: Int, _ b: UInt8) -> Bool {
        let n = nodes[node]
        if n.literals != nil || ((b == UInt8(ascii: "t") || b == UInt8(ascii: "f")) && n.kinds.contains(.boolean))
            || (b == UInt8(ascii: "n") && n.kinds.contains(.null)) {
            let alts = literals(node)
            guard alts.contains(where: { $0.first == b }) else { return false }
            s.literal = [b]
            s.mode = .literal(node, 1)
            if !alts.contains(where: { $0.count > 1 && $0.first == b }) { s.literal = []; valueEnded(&s) }
            return true
        }
        switch b {
        case UInt8(ascii: "{") where n.kinds.contains(.object):
            s.stack.append(Container(node: node, seen: 0))
            s.mode = .object(.firstKeyOrEnd)
        case UInt8(ascii: "[") where n.kinds.contains(.array):
            s.stack.append(Container(node: node, seen: 0, isObject: false))
            s.mode = .array(.firstValueOrEnd)
        case UInt8(ascii: "\"") where n.kinds.contains(.string):
            s.mode = .string(isKey: false, escape: 0)
        case UInt8(ascii: "-") where !n.kinds.isDisjoint(with: [.number, .integer]):
            s.mode = .number(node, .sign)
        case UInt8(ascii: "0") where !n.kinds.isDisjoint(with: [.number, .integer]):
            s.mode = .number(node, .zero)
        case UInt8(ascii: "1") ... UInt8(ascii: "9") where !n.kinds.isDisjoint(with: [.number, .integer]):
            s.mode = .number(node, .int)
        default:
            return false
        }
        return true
    }

    /// A scalar or container value just ended: back to its parent.
    private func valueEnded(_ s: inout JSONGrammarState) {
        guard let top = s.stack.last else { s.mode = .done; return }
        s.mode = top.isObject ? .object(.commaOrEnd) : .array(.commaOrEnd)
    }

    private func stringByte(_ s: inout JSONGrammarState, isKey: Bool, escape: UInt8, _ b: UInt8) -> Bool {
        if escape == 1 {
            guard b == UInt8(ascii: "u") || "\"\\/bfnrt".utf8.contains(b) else { return false }
            s.mode = .string(isKey: isKey, escape: b == UInt8(ascii: "u") ? 5 : 0)
            return true
        }
        if escape >= 2 {
            guard (b >= 0x30 && b <= 0x39) || (b | 0x20 >= 0x61 && b | 0x20 <= 0x66) else { return false }
            s.mode = .string(isKey: isKey, escape: escape == 2 ? 0 : escape - 1)
            return true
        }
        if b == UInt8(ascii: "\"") {
            if isKey { return keyEnded(&s) }
            valueEnded(&s)
            return true
        }
        if b < 0x20 { return false }
        if b == UInt8(ascii: "\\") {
            // Names are generated as written (the compiler refuses any that
            // need escaping): an escape in a restricted key would lead nowhere.
            if isKey && s.stack.last?.restrictsKeys(nodes) == true { return false }
            s.mode = .string(isKey: isKey, escape: 1)
            return true
        }
        if isKey {
            s.key.append(b)
            let top = s.stack[s.stack.count - 1]
            if top.restrictsKeys(nodes) {
                return nodes[top.node].properties.enumerated().contains { i, p in
                    top.seen & (1 << UInt64(i)) == 0 && p.key.starts(with: s.key)
                }
            }
        }
        return true
    }

    private func keyEnded(_ s: inout JSONGrammarState) -> Bool {
        let top = s.stack[s.stack.count - 1]
        let node = nodes[top.node]
        if let i = node.properties.firstIndex(where: { $0.key == s.key }) {
            guard top.seen & (1 << UInt64(i)) == 0 else { return false }
            s.stack[s.stack.count - 1].seen |= 1 << UInt64(i)
            s.stack[s.stack.count - 1].valueNode = node.properties[i].node
        } else {
            guard let extra = node.additional else { return false }
            s.stack[s.stack.count - 1].valueNode = extra
        }
        s.key = []
        s.mode = .object(.colon)
        return true
    }

    private func objectByte(_ s: inout JSONGrammarState, _ expect: ObjectExpect, _ b: UInt8) -> Bool {
        let top = s.stack[s.stack.count - 1]
        let node = nodes[top.node]
        let canEnd = node.required & ~top.seen == 0
        let moreKeys = node.additional != nil || node.properties.indices.contains { top.seen & (1 << UInt64($0)) == 0 }
        switch (expect, b) {
        case (.firstKeyOrEnd, UInt8(ascii: "}")) where canEnd, (.commaOrEnd, UInt8(ascii: "}")) where canEnd:
            s.stack.removeLast()
            valueEnded(&s)
        case (.firstKeyOrEnd, UInt8(ascii: "\"")) where moreKeys, (.key, UInt8(ascii: "\"")):
            s.key = []
            s.mode = .string(isKey: true, escape: 0)
        case (.commaOrEnd, UInt8(ascii: ",")) where moreKeys:
            s.mode = .object(.key)
        case (.colon, UInt8(ascii: ":")):
            s.mode = .value(top.valueNode)
        default:
            return false
        }
        return true
    }

    private func arrayByte(_ s: inout JSONGrammarState, _ expect: ArrayExpect, _ b: UInt8) -> Bool {
        let top = s.stack[s.stack.count - 1]
        switch (expect, b) {
        case (.firstValueOrEnd, UInt8(ascii: "]")), (.commaOrEnd, UInt8(ascii: "]")):
            s.stack.removeLast()
            valueEnded(&s)
            return true
        case (.commaOrEnd, UInt8(ascii: ",")):
            s.mode = .value(nodes[top.node].items)
            return true
        case (.firstValueOrEnd, _):
            s.mode = .value(nodes[top.node].items)
            return step(&s, b)
        default:
            return false
        }
    }

    private func numberStep(_ phase: NumberPhase, _ b: UInt8, integer: Bool) -> NumberPhase? {
        let digit = b >= 0x30 && b <= 0x39
        switch phase {
        case .sign: return b == 0x30 ? .zero : digit ? .int : nil
        case .zero: return b == UInt8(ascii: ".") && !integer ? .dot : (b | 0x20 == 0x65 && !integer) ? .exponent : nil
        case .int: return digit ? .int : b == UInt8(ascii: ".") && !integer ? .dot : (b | 0x20 == 0x65 && !integer) ? .exponent : nil
        case .dot: return digit ? .fraction : nil
        case .fraction: return digit ? .fraction : b | 0x20 == 0x65 ? .exponent : nil
        case .exponent: return digit ? .exponentDigits : (b == UInt8(ascii: "+") || b == UInt8(ascii: "-")) ? .exponentSign : nil
        case .exponentSign: return digit ? .exponentDigits : nil
        case .exponentDigits: return digit ? .exponentDigits : nil
        }
    }

    private func numberCanEnd(_ p: NumberPhase) -> Bool { p == .zero || p == .int || p == .fraction || p == .exponentDigits }
}

enum NumberPhase: UInt8 { case sign, zero, int, dot, fraction, exponent, exponentSign, exponentDigits }
enum ObjectExpect: UInt8 { case firstKeyOrEnd, key, colon, commaOrEnd }
enum ArrayExpect: UInt8 { case firstValueOrEnd, commaOrEnd }

/// An open object, array or string: its schema node and, for objects, the
/// properties already written and the node of the value being written.
struct Container {
    var node: Int
    var seen: UInt64
    var valueNode = 0
    var isObject: Bool
    init(node: Int, seen: UInt64, isObject: Bool = true) { self.node = node; self.seen = seen; self.isObject = isObject }
    /// Keys are limited to the schema's properties (additionalProperties false).
    func restrictsKeys(_ nodes: [SchemaNode]) -> Bool { nodes[node].additional == nil }
}

/// Where the automaton is: the open containers and the item being written.
struct JSONGrammarState {
    enum Mode {
        case value(Int)
        case string(isKey: Bool, escape: UInt8)
        case number(Int, NumberPhase)
        case literal(Int, Int)
        case object(ObjectExpect)
        case array(ArrayExpect)
        case done
    }
    var mode: Mode
    var stack: [Container] = []
    var key: [UInt8] = []
    var literal: [UInt8] = []
    var whitespace = 0
    init(mode: Mode) { self.mode = mode }
}

/// Turns an `OutputConstraint` into a grammar, refusing what it cannot enforce.
enum JSONConstraintCompiler {
    static let supported: Set<String> = ["type", "properties", "required", "additionalProperties", "items", "enum", "const"]
    static let annotations: Set<String> = ["title", "description", "$schema", "$id", "$comment", "default", "examples"]

    static func compile(_ constraint: OutputConstraint, vocabulary: @autoclosure () -> VocabularyIndex) throws -> JSONGrammar? {
        switch constraint {
        case .none: return nil
        case .jsonObject:
            var any = SchemaNode()
            any.additional = 0; any.items = 0
            var object = any
            object.kinds = .object
            return JSONGrammar(nodes: [any, object], root: 1, vocabulary: vocabulary())
        case .jsonSchema(let text):
            guard let data = text.data(using: .utf8),
                  let json = try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]) else {
                throw EngineError.invalidRequest(field: "response_format.json_schema", message: "is not valid JSON")
            }
            var schema = json
            // Tolerate OpenAI's wrapper {"name", "schema", "strict"}.
            if let o = json as? [String: Any], let inner = o["schema"], o["name"] != nil { schema = inner }
            var nodes: [SchemaNode] = [SchemaNode()]   // node 0: any value
            let root = try compileNode(schema, path: "schema", into: &nodes)
            return JSONGrammar(nodes: nodes, root: root, vocabulary: vocabulary())
        }
    }

    private static func refuse(_ path: String, _ message: String) -> EngineError {
        .invalidRequest(field: "response_format.json_schema", message: "\(path): \(message)")
    }

    private static func compileNode(_ value: Any, path: String, into nodes: inout [SchemaNode]) throws -> Int {
        guard let o = value as? [String: Any] else {
            if let b = value as? Bool {
                if b { return 0 }
                throw refuse(path, "the schema `false` allows nothing")
            }
            throw refuse(path, "a schema must be an object")
        }
        for key in o.keys where !supported.contains(key) && !annotations.contains(key) {
            throw refuse(path, "the keyword `\(key)` is not supported by constrained decoding (supported: \(supported.sorted().joined(separator: ", "))); remove it or validate the output yourself")
        }
        var node = SchemaNode()
        node.additional = 0; node.items = 0
        if let t = o["type"] {
            let names = (t as? [String]) ?? ((t as? String).map { [$0] } ?? [])
            if names.isEmpty { throw refuse(path + ".type", "must be a type name or a list of them") }
            var kinds: SchemaNode.Kinds = []
            for n in names {
                switch n {
                case "object": kinds.insert(.object)
                case "array": kinds.insert(.array)
                case "string": kinds.insert(.string)
                case "number": kinds.insert(.number)
                case "integer": kinds.insert(.integer)
                case "boolean": kinds.insert(.boolean)
                case "null": kinds.insert(.null)
                default: throw refuse(path + ".type", "unknown type `\(n)`")
                }
            }
            node.kinds = kinds
        } else if o["properties"] != nil {
            node.kinds = .object
        } else if o["items"] != nil {
            node.kinds = .array
        }
        let index = nodes.count
        nodes.append(node)
        if let props = o["properties"] {
            guard let dict = props as? [String: Any] else { throw refuse(path + ".properties", "must be an object") }
            if dict.count > 64 { throw refuse(path + ".properties", "has \(dict.count) properties; at most 64 are supported") }
            var list: [(key: [UInt8], node: Int)] = []
            for key in dict.keys.sorted() {
                if key.utf8.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) {
                    throw refuse(path + ".properties", "the name \(key.debugDescription) needs escaping, which constrained decoding does not generate")
                }
                list.append((Array(key.utf8), try compileNode(dict[key]!, path: path + ".properties.\(key)", into: &nodes)))
            }
            nodes[index].properties = list
        }
        if let req = o["required"] {
            guard let names = req as? [String] else { throw refuse(path + ".required", "must be a list of property names") }
            for name in names {
                guard let i = nodes[index].properties.firstIndex(where: { $0.key == Array(name.utf8) }) else {
                    throw refuse(path + ".required", "names `\(name)`, which is not in properties")
                }
                nodes[index].required |= 1 << UInt64(i)
            }
        }
        if let extra = o["additionalProperties"] {
            if extra is [String: Any] {
                nodes[index].additional = try compileNode(extra, path: path + ".additionalProperties", into: &nodes)
            } else if let b = extra as? Bool {
                nodes[index].additional = b ? 0 : nil
            } else {
                throw refuse(path + ".additionalProperties", "must be true, false or a schema")
            }
        }
        if let items = o["items"] {
            nodes[index].items = try compileNode(items, path: path + ".items", into: &nodes)
        }
        var literalValues: [Any]?
        if let e = o["enum"] {
            guard let list = e as? [Any], !list.isEmpty else { throw refuse(path + ".enum", "must be a non-empty list") }
            literalValues = list
        }
        if let c = o["const"] { literalValues = [c] }
        if let values = literalValues {
            nodes[index].literals = try values.map { v in
                guard let data = try? JSONSerialization.data(withJSONObject: v, options: [.fragmentsAllowed, .sortedKeys, .withoutEscapingSlashes]) else {
                    throw refuse(path, "an enum/const value cannot be serialized")
                }
                return Array(data)
            }
        }
        return index
    }
}
