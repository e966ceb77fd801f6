import Foundation
import LoftFormats
import LoftHub
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
    /// Whether adapters attached from now on are kept as IEEE half for
    /// decoding on the CPU (`PackedLoRA`; `--adapter-precision f16`).
    public var halfPrecisionAdapters = false
    /// The adapter directory attached now, if any.
    public private(set) var adapter: String?
    /// The end-of-sequence token the attached adapter was trained with
    /// (its tokenizer_config.json's eos_token), when it names one.
    public private(set) var adapterEOSTokenID: Int32?

    /// Loads from an HF directory or a .gguf; adapters (PEFT directories) are
    /// attached in order, and an adapter's own tokenizer files, when it has
    /// them, supply the template it was trained with.
    public init(path source: String, adapter: String? = nil, backend: Backend = CPUBackend.shared,
                halfPrecisionAdapters: Bool = false) throws {
        let path = try HubModel.localPath(source)   // a Hub id ("org/name") comes from the Hugging Face cache
        self.path = path
        self.halfPrecisionAdapters = halfPrecisionAdapters
        // An adapter trained on a quantized base runs on that same base.
        let base = try adapter.flatMap { try BaseWeightFormat.read(adapterDirectory: $0) } ?? .f32
        let (model, _) = try ModelLoader.load(path, backend: backend,
                                              baseWeights: ModelLoader.decodingBase(path, requested: base, backend: backend))
        // Generation on the CPU decodes on GGUF blocks in place where the
        // kernels multiply them (docs/decoding.md), and on f32 copies of any
        // other compact base (the same values, dequantized once) when they
        // take at most a quarter of the machine's memory; larger models keep
        // the compact base and its per-tile dequantization.
        if backend is CPUBackend { model.dequantizeFrozenWeights() }
        self.model = model
        let tokenizer = try Tokenizer.load(source: path)
        self.tokenizer = tokenizer
        baseTemplateSource = tokenizer.chatTemplate
        template = nil
        try setAdapter(adapter)
    }

    /// Attaches the adapter in `directory` (PEFT or mlx-lm; replacing the one
    /// attached), or detaches it with nil, keeping the base model loaded. The
    /// tokenizer files the adapter was saved with take precedence over the
    /// base model's: its chat_template.jinja (or tokenizer_config.json's
    /// chat_template) becomes the template, and that file's bos_token /
    /// eos_token are the template's special tokens, the EOS also ending replies.
    public func setAdapter(_ directory: String?) throws {
        var templateSource = baseTemplateSource
        var bos = tokenizer.bosToken, eos = tokenizer.eosToken
        var eosID: Int32?
        if let directory {
            try PEFTAdapter.load(directory, into: model)
            if model.backend is CPUBackend { model.packAdaptersForDecoding(half: halfPrecisionAdapters) }
            let saved = try AdapterTokenizerFiles(directory: directory)
            if let t = saved.chatTemplate { templateSource = t }
            if let b = saved.bosToken { bos = b }
            if let e = saved.eosToken {
                eos = e
                if let id = tokenizer.tokenToID(e) { eosID = Int32(id) }
            }
        } else {
            model.detachLoRA()
        }
        template = try templateSource.map { try ChatTemplate($0, bosToken: bos, eosToken: eos) }
        adapter = directory
        adapterEOSTokenID = eosID
    }

    /// Token ids of the conversation in a JSON file: a list of messages
    /// ({"role", "content"}), or an object with "messages" (and "tools").
    public func promptIDs(messagesFile path: String) throws -> [Int32] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw FormatError(path, "cannot be read; give a JSON file with a list of {\"role\", \"content\"} messages")
        }
        let input: JinjaValue
        do { input = try JSONReader.parse(String(decoding: data, as: UTF8.self)) } catch {
            throw FormatError(path, "is not valid JSON: \(error)")
        }
        var messages: [JinjaValue] = [], tools: [JinjaValue]?
        switch input {
        case .array(let list): messages = list
        case .object(let o):
            guard case .array(let list)? = o["messages"] else {
                throw FormatError(path, "expected a list of messages or an object with \"messages\"")
            }
            messages = list
            tools = o["tools"]?.arrayValue
        default: throw FormatError(path, "expected a list of messages or an object with \"messages\"")
        }
        if messages.isEmpty { throw FormatError(path, "holds no messages") }
        for (i, m) in messages.enumerated() where m["role"]?.stringValue == nil {
            throw FormatError(path, "message \(i) has no \"role\" string")
        }
        guard let template else {
            throw FormatError(self.path, "has no chat template to render \(path) with; use a plain --prompt, or a model with tokenizer.chat_template")
        }
        let text = try template.render(messages: messages, tools: tools, addGenerationPrompt: true)
        return tokenizer.encode(text, addSpecialTokens: false).map(Int32.init)
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
        if let e = adapterEOSTokenID { s.insert(e) }
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

/// The tokenizer files an adapter directory was saved with (Loft and PEFT
/// trainers save the tokenizer next to the adapter): the chat template
/// (chat_template.jinja, else tokenizer_config.json's chat_template) and the
/// special tokens tokenizer_config.json names.
public struct AdapterTokenizerFiles {
    public var chatTemplate: String?
    public var bosToken: String?
    public var eosToken: String?

    public init(directory: String) throws {
        let dir = URL(fileURLWithPath: directory)
        let configPath = dir.appendingPathComponent("tokenizer_config.json").path
        if let data = FileManager.default.contents(atPath: configPath) {
            guard let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
                throw FormatError(configPath, "is not a JSON object; fix or remove it (the base model's tokenizer settings are used without it)")
            }
            func token(_ key: String) -> String? {
                if let s = json[key] as? String { return s }
                return (json[key] as? [String: Any])?["content"] as? String
            }
            bosToken = token("bos_token")
            eosToken = token("eos_token")
            if let t = json["chat_template"] as? String { chatTemplate = t }
        }
        if let text = try? String(contentsOf: dir.appendingPathComponent("chat_template.jinja"), encoding: .utf8) {
            chatTemplate = text
        }
    }
}
