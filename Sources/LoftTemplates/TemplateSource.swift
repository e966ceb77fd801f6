import Foundation

/// Finding a model's chat template on disk: a `.jinja` file, a
/// `tokenizer_config.json` (or `chat_template.json`), or a model directory.
extension ChatTemplate {
    /// Loads the template and the `bos_token` / `eos_token` that go with it.
    /// `name` picks one of several named templates (e.g. "rag"); without it, as in
    /// transformers, "tool_use" is taken when `forTools` and one exists, else "default".
    public static func load(from url: URL, name: String? = nil, forTools: Bool = false) throws -> ChatTemplate {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
            throw TemplateError.invalidSource(message: "\(url.path): no such file or directory")
        }
        if url.pathExtension.lowercased() == "gguf" {
            throw TemplateError.invalidSource(message: "\(url.path): a GGUF file's template lives in its tokenizer metadata; "
                + "read it with LoftTokenizers' Tokenizer.load(source:).chatTemplate (as `loft template render` does)")
        }
        var filesRead: [String] = []
        let directory = isDirectory.boolValue ? url : url.deletingLastPathComponent()
        let tokenizerConfigURL = directory.appendingPathComponent("tokenizer_config.json")
        var config: JinjaValue?
        if fm.fileExists(atPath: tokenizerConfigURL.path) {
            config = try readJSON(tokenizerConfigURL)
            filesRead.append(tokenizerConfigURL.path)
        }
        var source: String?
        if isDirectory.boolValue {
            let jinjaURL = url.appendingPathComponent("chat_template.jinja")
            let jsonURL = url.appendingPathComponent("chat_template.json")
            if fm.fileExists(atPath: jinjaURL.path) {
                source = try readText(jinjaURL)
                filesRead.append(jinjaURL.path)
            } else if fm.fileExists(atPath: jsonURL.path) {
                filesRead.append(jsonURL.path)
                source = try templateField(readJSON(jsonURL), file: jsonURL.path, name: name, forTools: forTools)
            } else if let config {
                source = try templateField(config, file: tokenizerConfigURL.path, name: name, forTools: forTools)
            }
        } else if url.pathExtension.lowercased() == "json" {
            let value = try readJSON(url)
            if !filesRead.contains(url.path) { filesRead.append(url.path) }
            source = try templateField(value, file: url.path, name: name, forTools: forTools)
            if url.lastPathComponent == "tokenizer_config.json" { config = value }
        } else {
            source = try readText(url)
            filesRead.append(url.path)
        }
        guard let source else {
            throw TemplateError.missingTemplate(filesRead: filesRead.isEmpty ? [url.path] : filesRead,
                hint: "Set \"chat_template\" in tokenizer_config.json, put a chat_template.jinja beside it, or pass a .jinja file.")
        }
        do {
            return try ChatTemplate(source, bosToken: config.flatMap { tokenText($0["bos_token"]) },
                                    eosToken: config.flatMap { tokenText($0["eos_token"]) })
        } catch TemplateError.syntax(let message, let line, let column) {
            throw TemplateError.syntax(message: "\(message) (in the chat template from \(filesRead.last ?? url.path))", line: line, column: column)
        }
    }

    private static func readText(_ url: URL) throws -> String {
        do {
            return String(decoding: try Data(contentsOf: url), as: UTF8.self)
        } catch {
            throw TemplateError.invalidSource(message: "\(url.path): cannot read: \(error.localizedDescription)")
        }
    }

    private static func readJSON(_ url: URL) throws -> JinjaValue {
        do {
            return try JSONReader.parse(readText(url))
        } catch let e as JSONReader.ParseError {
            throw TemplateError.invalidSource(message: "\(url.path): \(e)")
        }
    }

    /// `chat_template` is a string, or a list of `{name, template}` (transformers
    /// uses the one named "default" unless told otherwise).
    private static func templateField(_ value: JinjaValue, file: String, name: String?, forTools: Bool) throws -> String? {
        switch value["chat_template"] {
        case .string(let s)?: return s
        case .array(let entries)?:
            var named: [String: String] = [:]
            for e in entries {
                if let n = e["name"]?.stringValue, let t = e["template"]?.stringValue { named[n] = t }
            }
            let wanted = name ?? ((forTools && named["tool_use"] != nil) ? "tool_use" : "default")
            if let t = named[wanted] { return t }
            throw TemplateError.invalidSource(message: "\(file): chat_template has no template named \"\(wanted)\"; "
                + "it has: \(named.keys.sorted().joined(separator: ", ")). Pick one by name.")
        case nil, .null?: return nil
        default:
            throw TemplateError.invalidSource(message: "\(file): \"chat_template\" must be a string or a list of {name, template}")
        }
    }

    /// Special tokens in tokenizer_config.json are strings or AddedToken objects.
    private static func tokenText(_ v: JinjaValue?) -> String? {
        switch v {
        case .string(let s)?: return s
        case .object(let o)?: return o["content"]?.stringValue
        default: return nil
        }
    }
}
