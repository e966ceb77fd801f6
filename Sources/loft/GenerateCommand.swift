import ArgumentParser
import Foundation
import LoftInference
import LoftModels

struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Generate tokens from a prompt with a KV cache.")

    @Argument(help: "A Hugging Face model directory, a .gguf file, or a Hub id (org/name).")
    var model: String

    @Option(help: "Comma-separated prompt token ids.")
    var ids: String?

    @Option(help: "Prompt text (tokenized with the model's tokenizer).")
    var prompt: String?

    @Flag(help: "Treat --prompt as a user message and render it with the model's chat template.")
    var chat = false

    @Option(help: "System message for --chat.")
    var system: String?

    @Option(help: "A JSON file with a conversation (a list of {\"role\", \"content\"}), rendered with the chat template (the adapter's when it has one).")
    var messages: String?

    @Option(help: "A LoRA adapter directory (PEFT or mlx-lm format) to apply.")
    var adapter: String?

    @Option(name: .customLong("adapter-precision"), help: "How the adapter's LoRA weights are kept for decoding on the CPU: f32 (default: the trained values exactly) or f16 (half the bytes each token reads, as `loft serve` keeps adapters by default).")
    var adapterPrecision = AdapterPrecision.f32

    @Option(name: .customLong("max-new-tokens"), help: "How many tokens to generate at most.")
    var maxNewTokens = 32

    @OptionGroup var sampling: SamplingFlags

    @Option(name: .customLong("stop"), help: "Comma-separated token ids that end generation (default: the model's EOS).")
    var stop: String?

    @Flag(help: "Print JSON.")
    var json = false

    func validate() throws {
        if maxNewTokens < 0 { throw ValidationError("--max-new-tokens must be ≥ 0") }
        if [ids != nil, prompt != nil, messages != nil].filter({ $0 }).count != 1 {
            throw ValidationError("give exactly one of --ids, --prompt and --messages")
        }
        if chat && prompt == nil { throw ValidationError("--chat needs --prompt") }
        if system != nil && !chat { throw ValidationError("--system needs --chat") }
    }

    func run() throws {
        if prompt != nil || messages != nil { return try runText() }
        let prompt = try parseIDs(ids ?? "")
        guard !prompt.isEmpty else { throw CLIError("--ids is empty; give at least one token id") }
        // On the base the adapter was trained on (QLoRA's NF4 …), a .gguf base
        // on its own blocks, other compact bases on f32 copies: as LanguageModel.
        let m = try ModelLoader.load(try localModel(model), adapter: adapter, decoding: true).model
        m.dequantizeFrozenWeights()
        m.packAdaptersForDecoding(half: adapterPrecision.isHalf)
        if let bad = prompt.first(where: { Int($0) >= m.config.vocabSize }) {
            throw CLIError("--ids: \(bad) is outside the vocabulary of \(m.config.vocabSize)")
        }
        let stops = try stop.map { Set(try parseIDs($0)) } ?? Set(m.config.eosTokenIDs.map(Int32.init))
        let options = sampling.options
        let streaming = !json
        let result = Generator(model: m).generate(prompt: prompt, maxNewTokens: maxNewTokens, sampling: options,
                                                  stopTokens: stops) { token in
            if streaming { print(token, terminator: " "); fflush(stdout) }
            return true
        }
        let rate = Double(result.tokens.count) / max(result.generationSeconds + result.promptSeconds, 1e-9)
        if json {
            printJSON(["ids": result.tokens.map { Int($0) }, "prompt_tokens": prompt.count,
                       "stopped_on_token": result.stoppedOnToken,
                       "prompt_seconds": result.promptSeconds, "generation_seconds": result.generationSeconds])
        } else {
            print("")
            fflush(stdout)
            writeErr(String(format: "%d tokens, %.1f tokens/s", result.tokens.count, rate))
        }
    }

    /// Text in, text out, with the tokenizer and (for --chat) the chat template.
    func runText() throws {
        let lm = try LanguageModel(path: try localModel(model), adapter: adapter, halfPrecisionAdapters: adapterPrecision.isHalf)
        let promptIDs: [Int32]
        if let messages {
            promptIDs = try lm.promptIDs(messagesFile: messages)
        } else if chat, let text = prompt {
            var messages: [(role: String, content: String)] = []
            if let system { messages.append(("system", system)) }
            messages.append(("user", text))
            promptIDs = try lm.promptIDs(messages: messages)
        } else {
            promptIDs = lm.promptIDs(text: prompt ?? "")
        }
        let options = sampling.options
        let started = Date()
        let streaming = !json
        let (ids, reply) = lm.generate(prompt: promptIDs, maxNewTokens: maxNewTokens, sampling: options) { piece in
            if streaming { print(piece, terminator: ""); fflush(stdout) }
        }
        let seconds = Date().timeIntervalSince(started)
        if json {
            printJSON(["text": reply, "ids": ids.map { Int($0) }, "prompt_ids": promptIDs.map { Int($0) }, "seconds": seconds])
        } else {
            print("")
            fflush(stdout)
            writeErr(String(format: "%d tokens in %.2fs", ids.count, seconds))
        }
    }
}
