import ArgumentParser
import Foundation
import LoftEngine
import LoftInference
import LoftModels
import LoftTensors

/// `loft engine-bench`: aggregate decoding throughput of the batched engine
/// at several concurrencies, with no adapter, one adapter for every row, and
/// 8 distinct adapters mixed in one batch (random rank-r adapters on every
/// projection, written to a temporary directory).
struct EngineBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "engine-bench",
        abstract: "Measure the batched generation engine: tokens/s at 1, 4, 16 streams, with and without adapters.")

    @Argument(help: "A Hugging Face model directory or a .gguf file.")
    var model: String

    @Option(help: "Concurrent streams to measure (comma-separated).")
    var streams = "1,4,16"

    @Option(name: .customLong("max-tokens"), help: "Tokens generated per stream.")
    var maxTokens = 64

    @Option(name: .customLong("prompt-tokens"), help: "Prompt tokens per stream.")
    var promptTokens = 32

    @Option(help: "Which cases to run: base, 1 (one adapter on every row), 8 (8 adapters mixed).")
    var cases = "base,1,8"

    @Option(help: "Rank of the random adapters.")
    var rank = 16

    @Option(name: .customLong("adapter-precision"), help: "How the engine keeps adapters for decoding: f32 or f16 (as `loft serve --adapter-precision`).")
    var adapterPrecision = AdapterPrecision.f32

    @Option(help: "Rounds of every case, interleaved (the report gives each case's median): on a shared machine one round mostly measures the neighbours.")
    var rounds = 1

    @Flag(help: "Print JSON.")
    var json = false

    func validate() throws {
        if rounds < 1 { throw ValidationError("--rounds must be at least 1") }
    }

    func run() throws {
        let counts = streams.split(separator: ",").compactMap { Int($0) }
        let language = try LanguageModel(path: model)
        let adapterRoot = FileManager.default.temporaryDirectory.appendingPathComponent("loft-engine-bench-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: adapterRoot) }
        let dirs = try (0 ..< 8).map { try writeRandomAdapter(language.model, seed: UInt64($0), to: adapterRoot + "/a\($0)") }
        let maxBatch = counts.max() ?? 16
        let engine = try BatchEngine(model: language.model, tokenizer: language.tokenizer, name: "base", modelPath: language.path,
                                     configuration: EngineConfiguration(maxBatch: maxBatch, contextLength: promptTokens + maxTokens + 16,
                                                                        halfPrecisionAdapters: adapterPrecision.isHalf))
        defer { engine.shutdown() }
        for (i, d) in dirs.enumerated() { _ = try engine.loadAdapter(name: "a\(i)", directory: d) }
        let vocab = language.model.config.vocabSize
        func prompt(_ i: Int) -> [Int32] { (0 ..< promptTokens).map { Int32((1000 + 7919 * (i * promptTokens + $0)) % vocab) } }
        // CPU seconds of the whole process (user + system): on a shared
        // machine wall time mostly measures the neighbours.
        func cpuSeconds() -> Double {
            var usage = rusage()
            #if os(Linux)
            getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
            #else
            getrusage(RUSAGE_SELF, &usage)
            #endif
            return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
        }
        func measure(_ n: Int, models: (Int) -> String?) throws -> (tokensPerSecond: Double, tokensPerCPUSecond: Double) {
            let requests = (0 ..< n).map { GenerationRequest(model: models($0), prompt: prompt($0), maxTokens: maxTokens, ignoreEOS: true) }
            let t0 = Date(), c0 = cpuSeconds()
            let results = try engine.generate(requests)
            let seconds = Date().timeIntervalSince(t0), cpu = cpuSeconds() - c0
            let tokens = Double(results.reduce(0) { $0 + $1.usage.completionTokens })
            return (tokens / seconds, tokens / cpu)
        }
        _ = try measure(1, models: { _ in nil })   // warm-up
        var rows: [[String: Any]] = []
        let all: [(String, (Int) -> String?)] = [("base", { _ in nil }), ("1 adapter", { _ in "a0" }), ("8 adapters", { i in "a\(i % 8)" })]
        let wanted = Set(cases.split(separator: ",").map(String.init))
        let chosen = counts.flatMap { n in all.filter { wanted.contains(String($0.0.prefix(while: { $0 != " " }))) }.map { (n, $0.0, $0.1) } }
        // Every case once per round, so a slow minute of the machine falls on all of them.
        var samples = [[(tokensPerSecond: Double, tokensPerCPUSecond: Double)]](repeating: [], count: chosen.count)
        for _ in 0 ..< rounds {
            for (i, c) in chosen.enumerated() { samples[i].append(try measure(c.0, models: c.2)) }
        }
        func median(_ v: [Double]) -> Double { let s = v.sorted(); return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2 }
        if !json { print("streams  adapters     tok/s (wall)  tok per CPU-second" + (rounds > 1 ? "   (medians of \(rounds) rounds; wall min-max)" : "")) }
        for (i, c) in chosen.enumerated() {
            let wall = samples[i].map(\.tokensPerSecond), cpu = samples[i].map(\.tokensPerCPUSecond)
            rows.append(["streams": c.0, "adapters": c.1, "tokens_per_second": median(wall),
                         "tokens_per_cpu_second": median(cpu), "rounds": wall])
            if !json {
                print(String(format: "%7d  ", c.0) + c.1.padding(toLength: 10, withPad: " ", startingAt: 0)
                      + String(format: "  %12.1f  %18.1f", median(wall), median(cpu))
                      + (rounds > 1 ? String(format: "   %.1f-%.1f", wall.min()!, wall.max()!) : ""))
            }
        }
        if json {
            let out: [String: Any] = ["model": (model as NSString).lastPathComponent, "rank": rank, "max_tokens": maxTokens,
                                      "adapter_precision": adapterPrecision.rawValue,
                                      "prompt_tokens": promptTokens, "rows": rows,
                                      "max_adapters_in_one_step": engine.metrics().maxAdaptersInOneStep]
            print(String(decoding: try JSONSerialization.data(withJSONObject: out, options: [.sortedKeys]), as: UTF8.self))
        }
    }

    private func writeRandomAdapter(_ model: LlamaModel, seed: UInt64, to dir: String) throws -> String {
        var random = SamplerRandom(seed: seed)
        let config = LoRAConfig(rank: rank, alpha: Double(2 * rank))
        for layer in model.layers {
            for (_, linear) in layer.projections {
                let a = (0 ..< rank * linear.inFeatures).map { _ in Float.random(in: -0.02 ... 0.02, using: &random) }
                let b = (0 ..< linear.outFeatures * rank).map { _ in Float.random(in: -0.02 ... 0.02, using: &random) }
                linear.lora = LoRA(a: Tensor.cpu(a, shape: [rank, linear.inFeatures]),
                                   b: Tensor.cpu(b, shape: [linear.outFeatures, rank]), scale: config.scale)
            }
        }
        defer { model.detachLoRA() }
        try PEFTAdapter.save(model, config: config, baseModel: self.model, to: dir)
        return dir
    }
}
