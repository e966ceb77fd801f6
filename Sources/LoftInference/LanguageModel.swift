import Foundation
import LoftFormats
import LoftModels
import LoftTemplates
import LoftTensors
import LoftTokenizers

/// A model with its tokenizer and chat template, ready to answer: what
/// `loft generate` and `loft chat` use, and what a Swift program would.
public final class LanguageModel {
    public let model: LlamaModel
    public let tokenizer: Tokenizer
    public private(set) var template: ChatTemplate?
    public let path: String
    /// The base model's own template, restored when an adapter is detached.
    let baseTemplateSource: String?
    /// The adapter directory attached now, if any.
    public private(set) var adapter: String?

    /// Loads from an HF directory or a .gguf; adapters (PEFT directories) are
    /// attached in order, and an adapter's own tokenizer files, when it has
    /// them, supply the template it was trained with.
    public init(path: String, adapter: String? = nil, backend: Backend = CPUBackend.shared) throws {
        self.path = path
        // An adapter trained on a quantized base runs on that same base.
        let base = try adapter.flatMap { try BaseWeightFormat.read(adapterDirectory: $0) } ?? .f32
        let (model, _) = try ModelLoader.load(path, backend: backend, baseWeights: base)
        self.model = model
        let tokenizer = try Tokenizer.load(source: path)
        self.tokenizer = tokenizer
        baseTemplateSource = tokenizer.chatTemplate
        template = nil
        try setAdapter(adapter)
    }

    /// Attaches the adapter in `directory` (replacing the one attached), or
    /// detaches it with nil, keeping the base model loaded. The adapter's own
    /// chat_template.jinja, when it has one, becomes the template.
    public func setAdapter(_ directory: String?) throws {
        var templateSource = baseTemplateSource
        if let directory {
            try PEFTAdapter.load(directory, into: model)
            let saved = URL(fileURLWithPath: directory).appendingPathComponent("chat_template.jinja")
            if let text = try? String(contentsOf: saved, encoding: .utf8) { templateSource = text }
        } else {
            model.detachLoRA()
        }
        template = try templateSource.map { try ChatTemplate($0, bosToken: tokenizer.bosToken, eosToken: tokenizer.eosToken) }
        adapter = directory
    }

    /// Token ids of a chat conversation, rendered with the model's template
    /// and ready for the assistant's reply.
    public func promptIDs(messages: [(role: String, content: String)]) throws -> [Int32] {
        guard let template else {
            throw FormatError(path, "has no chat template; use a plain --prompt, or a model with tokenizer.chat_template")
        }
        let values: [JinjaValue] = messages.map { ["role": .string($0.role), "content": .string($0.content)] }
        let text = try template.render(messages: values, addGenerationPrompt: true)
        return tokenizer.encode(text, addSpecialTokens: false).map(Int32.init)
    }

    /// Token ids of plain text (with the tokenizer's own special tokens, e.g. BOS).
    public func promptIDs(text: String) -> [Int32] {
        tokenizer.encode(text, addSpecialTokens: true).map(Int32.init)
    }

    /// Tokens that end a reply: the EOS and the end-of-turn tokens the template uses.
    public var stopTokens: Set<Int32> {
        var s = Set(model.config.eosTokenIDs.map(Int32.init))
        if let e = tokenizer.eosTokenID { s.insert(Int32(e)) }
        for name in ["<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "</s>", "<|endoftext|>"] {
            if let id = tokenizer.tokenToID(name), tokenizer.isSpecial(id) { s.insert(Int32(id)) }
        }
        return s
    }

    /// Generates a reply, streaming decoded text pieces through `onText`.
    public func generate(prompt: [Int32], maxNewTokens: Int, sampling: SamplingOptions = .greedy,
                         onText: ((String) -> Void)? = nil) -> (ids: [Int32], text: String) {
        let stream = StreamingDetokenizer(tokenizer: tokenizer, skipSpecialTokens: true)
        let stops = stopTokens
        let result = Generator(model: model).generate(prompt: prompt, maxNewTokens: maxNewTokens, sampling: sampling,
                                                      stopTokens: stops) { id in
            if !stops.contains(id) { let piece = stream.add(Int(id)); if !piece.isEmpty { onText?(piece) } }
            return true
        }
        let rest = stream.finish()
        if !rest.isEmpty { onText?(rest) }
        let text = tokenizer.decode(result.tokens.filter { !stops.contains($0) }.map(Int.init), skipSpecialTokens: true)
        return (result.tokens, text)
    }
}
