import ArgumentParser
import LoftInference

/// The sampling flags `generate` and `chat` share.
struct SamplingFlags: ParsableArguments {
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
    }

    var options: SamplingOptions {
        SamplingOptions(temperature: greedy ? 0 : temperature, topK: topK, topP: topP,
                        repetitionPenalty: repetitionPenalty, seed: seed)
    }
}

/// `--adapter-precision`: how adapters' LoRA weights are kept for CPU decoding
/// (`generate`, `serve`, `engine-bench`); argument parsing rejects other values.
enum AdapterPrecision: String, ExpressibleByArgument, CaseIterable {
    case f32, f16

    var isHalf: Bool { self == .f16 }
}
