import Foundation
import LoftFormats

/// A conversation with a model: the history rendered with the chat template
/// each turn, streamed replies, and the REPL commands of `loft chat`
/// (/reset, /system TEXT, /adapter DIR|none, /quit). The model stays loaded
/// when adapters are switched; LoRA weights are attached to and detached from
/// the same `LlamaModel`.
public final class ChatSession {
    public let lm: LanguageModel
    public var system: String?
    public var sampling: SamplingOptions
    public var maxNewTokens: Int
    public private(set) var history: [(role: String, content: String)] = []

    public init(model: LanguageModel, system: String? = nil, sampling: SamplingOptions = .greedy, maxNewTokens: Int = 256) {
        lm = model
        self.system = system
        self.sampling = sampling
        self.maxNewTokens = maxNewTokens
    }

    /// The messages the template renders: the system message, then the turns.
    public var messages: [(role: String, content: String)] {
        (system.map { [("system", $0)] } ?? []) + history
    }

    /// Sends a user message; streams the reply through `onText` and keeps both in the history.
    @discardableResult
    public func send(_ text: String, onText: ((String) -> Void)? = nil) throws -> String {
        let prompt = try lm.promptIDs(messages: messages + [("user", text)])
        let reply = lm.generate(prompt: prompt, maxNewTokens: maxNewTokens, sampling: sampling, onText: onText).text
        history.append(("user", text))
        history.append(("assistant", reply))
        return reply
    }

    public func reset() { history.removeAll() }

    /// Attaches an adapter (nil detaches); on failure the previous adapter stays attached.
    public func setAdapter(_ directory: String?) throws {
        let previous = lm.adapter
        do { try lm.setAdapter(directory) } catch {
            try? lm.setAdapter(previous)
            throw error
        }
    }

    /// What one input line did.
    public enum Outcome: Equatable {
        case reply(String)
        /// A command ran; the text says what happened.
        case info(String)
        case quit
    }

    /// Handles one line of REPL input: a command, or a message to the model.
    public func handle(line raw: String, onText: ((String) -> Void)? = nil) -> Outcome {
        let line = raw.trimmingCharacters(in: .whitespacesAndNewlines)
        if line.isEmpty { return .info("") }
        guard line.hasPrefix("/") else {
            do { return .reply(try send(raw, onText: onText)) } catch { return .info("error: \(error)") }
        }
        let parts = line.split(separator: " ", maxSplits: 1)
        let command = String(parts[0]), arg = parts.count > 1 ? String(parts[1]).trimmingCharacters(in: .whitespaces) : ""
        switch command {
        case "/quit", "/exit", "/q":
            return .quit
        case "/reset":
            reset()
            return .info("history cleared")
        case "/system":
            system = arg.isEmpty ? nil : arg
            reset()
            return .info(arg.isEmpty ? "system message removed; history cleared" : "system message set; history cleared")
        case "/adapter":
            guard !arg.isEmpty else { return .info("adapter: \(lm.adapter ?? "none") (use /adapter DIR or /adapter none)") }
            do {
                try setAdapter(arg == "none" ? nil : arg)
                return .info(arg == "none" ? "adapter detached" : "adapter \(arg) attached")
            } catch {
                return .info("error: \(error)")
            }
        case "/history":
            return .info(messages.map { "\($0.role): \($0.content)" }.joined(separator: "\n"))
        case "/help":
            return .info(Self.help)
        default:
            return .info("unknown command \(command); \(Self.help)")
        }
    }

    public static let help = "commands: /reset, /system TEXT, /adapter DIR|none, /history, /quit"
}
