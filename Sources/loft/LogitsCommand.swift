import ArgumentParser
import Foundation
import LoftModels

struct LogitsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logits",
        abstract: "Run one forward pass and show the last position's top logits.")

    @Argument(help: "A Hugging Face model directory or a .gguf file.")
    var model: String

    @Option(help: "Comma-separated input token ids.")
    var ids: String

    @Option(help: "How many of the largest logits to show.")
    var top = 10

    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        let input = try parseIDs(ids)
        guard !input.isEmpty else { throw CLIError("--ids is empty; give at least one token id") }
        let (m, _) = try ModelLoader.load(model)
        if let bad = input.first(where: { Int($0) >= m.config.vocabSize }) {
            throw CLIError("--ids: \(bad) is outside the vocabulary of \(m.config.vocabSize)")
        }
        let logits = m.forward(ids: input, logitRows: [input.count - 1]).toArray()
        let best = logits.indices.sorted { logits[$0] > logits[$1] }.prefix(max(top, 0))
        if json {
            printJSON(["ids": best.map { $0 }, "logits": best.map { Double(logits[$0]) }, "position": input.count - 1])
        } else {
            for i in best { print(String(format: "%8d  %10.5f", i, logits[i])) }
        }
    }
}
