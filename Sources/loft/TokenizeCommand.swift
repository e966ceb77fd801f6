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
    @Flag(help: "Print only the token count and encode throughput (MB/s, one core).") var stats = false

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
        let t0 = DispatchTime.now().uptimeNanoseconds
        let ids = tok.encode(input, addSpecialTokens: !noSpecial)
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        if stats {
            // Whole input as one string, then as documents split at blank lines.
            let mb = Double(input.utf8.count) / 1e6
            var checksum: UInt64 = 0
            for id in ids { checksum = checksum &* 1_000_003 &+ UInt64(id) }
            print(String(format: "whole: tokens %d  bytes %d  seconds %.3f  MB/s %.2f  ids-checksum %016llx", ids.count, input.utf8.count, seconds, mb / seconds, checksum))
            let docs = input.components(separatedBy: "\n\n")
            let t1 = DispatchTime.now().uptimeNanoseconds
            var n = 0
            for d in docs { n += tok.encode(d, addSpecialTokens: !noSpecial).count }
            let s2 = Double(DispatchTime.now().uptimeNanoseconds - t1) / 1e9
            print(String(format: "docs:  tokens %d  docs %d  seconds %.3f  MB/s %.2f", n, docs.count, s2, mb / s2))
            return
        }
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
