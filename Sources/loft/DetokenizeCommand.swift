import ArgumentParser
import Foundation
import LoftTokenizers

struct DetokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "detokenize",
        abstract: "Print the text of token ids.")

    @Argument(help: "Tokenizer source (as for tokenize).") var source: String
    @Option(help: "Comma- or space-separated ids, e.g. 1,2,3.") var ids: String
    @Flag(name: .customLong("skip-special"), help: "Leave out special tokens.") var skipSpecial = false
    @Option(help: "tiktoken family: llama3, qwen or gpt2.") var family: String?
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        var list = [Int]()
        for part in ids.split(whereSeparator: { $0 == "," || $0 == " " }) {
            guard let n = Int(part) else { throw ValidationError("--ids: \"\(part)\" is not an integer") }
            list.append(n)
        }
        let tok = try Tokenizer.load(source: source, family: family)
        if let bad = list.first(where: { tok.idToToken($0) == nil }) {
            throw ValidationError("id \(bad) is outside the vocabulary (size \(tok.vocabularySize))")
        }
        let text = tok.decode(list, skipSpecialTokens: skipSpecial)
        if json {
            let data = try JSONSerialization.data(withJSONObject: ["text": text], options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print(text)
        }
    }
}
