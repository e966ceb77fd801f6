import ArgumentParser
import Foundation
import LoftInference

struct ChatCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat",
        abstract: "Talk to a model in the terminal, with its chat template, streamed replies and history.",
        discussion: ChatSession.help)

    @Argument(help: "A Hugging Face model directory or a .gguf file.")
    var model: String

    @Option(help: "A LoRA adapter directory (PEFT format) to start with; /adapter switches it.")
    var adapter: String?

    @Option(help: "System message.")
    var system: String?

    @Option(name: .customLong("max-new-tokens"), help: "How many tokens a reply may have at most.")
    var maxNewTokens = 256

    @Flag(help: "Always take the most likely token (the default when --temperature is 0).")
    var greedy = false

    @Option(help: "Sampling temperature; 0 is greedy.")
    var temperature: Float = 0

    @Option(name: .customLong("top-k"), help: "Sample among the k most likely tokens (0 = all).")
    var topK = 0

    @Option(name: .customLong("top-p"), help: "Sample from the smallest set of tokens whose probability reaches p.")
    var topP: Float = 1

    @Option(name: .customLong("repetition-penalty"), help: "Penalty for tokens already in the context (1 = none).")
    var repetitionPenalty: Float = 1

    @Option(help: "Random seed for sampling.")
    var seed: UInt64 = 0

    func validate() throws {
        if greedy && temperature > 0 { throw ValidationError("--greedy and --temperature > 0 contradict each other; pick one") }
        if temperature < 0 { throw ValidationError("--temperature must be ≥ 0") }
        if !(0 < topP && topP <= 1) { throw ValidationError("--top-p must be in (0, 1]") }
        if maxNewTokens <= 0 { throw ValidationError("--max-new-tokens must be positive") }
    }

    func run() throws {
        let lm = try LanguageModel(path: model, adapter: adapter)
        guard lm.template != nil else {
            throw CLIError("\(model) has no chat template; use `loft generate --prompt` for plain text")
        }
        let options = SamplingOptions(temperature: greedy ? 0 : temperature, topK: topK, topP: topP,
                                      repetitionPenalty: repetitionPenalty, seed: seed)
        let session = ChatSession(model: lm, system: system, sampling: options, maxNewTokens: maxNewTokens)
        let interactive = isatty(0) != 0
        if interactive { writeErr("loft chat — \(ChatSession.help)") }
        while true {
            if interactive { print("> ", terminator: ""); fflush(stdout) }
            guard let line = readLine(strippingNewline: true) else { break }
            switch session.handle(line: line, onText: { print($0, terminator: ""); fflush(stdout) }) {
            case .quit: return
            case .reply: print("")
            case .info(let text): if !text.isEmpty { writeErr(text) }
            }
        }
    }
}
