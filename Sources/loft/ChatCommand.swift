import ArgumentParser
import Foundation
import LoftInference

struct ChatCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat",
        abstract: "Talk to a model in the terminal, with its chat template, streamed replies and history.",
        discussion: ChatSession.help)

    @Argument(help: "A Hugging Face model directory, a .gguf file, or a Hub id (org/name).")
    var model: String

    @Option(help: "A LoRA adapter directory (PEFT or mlx-lm format) to start with; /adapter switches it.")
    var adapter: String?

    @Option(help: "System message.")
    var system: String?

    @Option(name: .customLong("max-new-tokens"), help: "How many tokens a reply may have at most.")
    var maxNewTokens = 256

    @OptionGroup var sampling: SamplingFlags

    func validate() throws {
        if maxNewTokens <= 0 { throw ValidationError("--max-new-tokens must be positive") }
    }

    func run() throws {
        let lm = try LanguageModel(path: try localModel(model), adapter: adapter)
        guard lm.template != nil else {
            throw CLIError("\(model) has no chat template; use `loft generate --prompt` for plain text")
        }
        let options = sampling.options
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
