import ArgumentParser
import Foundation
import LoftTokenizers

struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Print the token ids of a text.",
        discussion: "SOURCE is a model directory, a .gguf, a tokenizer.json, a .tiktoken ranks file (with --family llama3|qwen|gpt2) or a SentencePiece .model.")

    @Argument(help: "Tokenizer source.") var source: String
    @Option(help: "Text to tokenize.") var text: String?
    @Option(help: "File whose contents to tokenize.") var file: String?
    @Flag(name: .customLong("no-special"), help: "Do not add BOS/EOS or other template tokens.") var noSpecial = false
    @Option(help: "tiktoken family: llama3, qwen or gpt2.") var family: String?
    @Flag(help: "Also print each token's string.") var verbose = false
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let input: String
        switch (text, file) {
        case (let t?, nil): input = t
        case (nil, let f?):
            guard let d = FileManager.default.contents(atPath: f) else { throw ValidationError("cannot read \(f)") }
            input = String(decoding: d, as: UTF8.self)
        default: throw ValidationError("give exactly one of --text or --file")
        }
        let tok = try Tokenizer.load(source: source, family: family)
        let ids = tok.encode(input, addSpecialTokens: !noSpecial)
        if json {
            var obj: [String: Any] = ["ids": ids]
            if verbose { obj["tokens"] = ids.map { tok.idToToken($0) ?? "" } }
            let data = try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else if verbose {
            for id in ids { print("\(id)\t\((tok.idToToken(id) ?? "").debugDescription)") }
        } else {
            print(ids.map(String.init).joined(separator: " "))
        }
    }
}
