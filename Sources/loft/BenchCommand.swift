import ArgumentParser
import Foundation
import LoftInference
import LoftModels
import LoftTensors
import LoftTraining

/// `loft bench`: the numbers BENCHMARKS.md reports, measured the way
/// bench/hf_bench.py measures transformers, so the two can run side by side.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure GEMM, forward, generation and LoRA training speed on a model.")

    @Argument(help: "A Hugging Face model directory or a .gguf file.")
    var model: String

    @Option(help: "Which parts to run: gemm, prefill, generate, train (comma-separated).")
    var only = "gemm,prefill,generate,train"

    @Option(help: "Timed repetitions of each measurement (the median is reported).")
    var repeats = 3

    @Option(name: .customLong("train-steps"), help: "Optimizer steps timed for training.")
    var trainSteps = 3

    @Option(name: .customLong("train-batch"), help: "Sequences per training micro-batch.")
    var trainBatch = 4

    @Option(name: .customLong("train-seq"), help: "Tokens per training sequence.")
    var trainSeq = 512

    @Flag(name: .customLong("gradient-checkpointing"), help: "Train with gradient checkpointing.")
    var gradientCheckpointing = false

    @Flag(help: "Print JSON.")
    var json = false

    func median(_ xs: [Double]) -> Double { xs.sorted()[xs.count / 2] }

    func time(_ body: () -> Void) -> Double {
        let t = Date()
        body()
        return Date().timeIntervalSince(t)
    }

    func run() throws {
        let parts = Set(only.split(separator: ",").map(String.init))
        var result: [String: Any] = ["impl": "loft", "model": (model as NSString).lastPathComponent,
                                     "threads": ProcessInfo.processInfo.activeProcessorCount]
        let backend = CPUBackend.shared
        if parts.contains("gemm") {
            let n = 1024
            let a = Tensor.cpu((0 ..< n * n).map { _ in Float.random(in: -1 ... 1) }, shape: [n, n])
            let w = Tensor.cpu((0 ..< n * n).map { _ in Float.random(in: -1 ... 1) }, shape: [n, n])
            let y = Tensor.zeros([n, n])
            backend.linear(a, w, bias: nil, into: y, accumulate: false)
            let s = median((0 ..< max(repeats, 5)).map { _ in time { backend.linear(a, w, bias: nil, into: y, accumulate: false) } })
            result["sgemm_1024_gflops"] = 2 * Double(n * n * n) / s / 1e9
        }
        let loadStart = Date()
        let (m, _) = try ModelLoader.load(model)
        result["load_s"] = Date().timeIntervalSince(loadStart)
        result["params"] = m.config.parameterCount
        var rng = SystemRandomNumberGenerator()
        func ids(_ n: Int) -> [Int32] { (0 ..< n).map { _ in Int32.random(in: 100 ..< 10000, using: &rng) } }

        if parts.contains("prefill") {
            var prefill: [String: Any] = [:]
            for (batch, seq) in [(1, 128), (4, 128)] {
                let tokens = ids(batch * seq)
                let segments = (0 ..< batch).map { $0 * seq }
                let positions = (0 ..< batch * seq).map { Int32($0 % seq) }
                _ = m.forward(ids: tokens, positions: positions, segments: segments, logitRows: [])
                let s = median((0 ..< repeats).map { _ in
                    time { _ = m.forward(ids: tokens, positions: positions, segments: segments,
                                         logitRows: segments.map { $0 + seq - 1 }) }
                })
                prefill["\(batch)x\(seq)"] = ["tokens_per_s": Double(batch * seq) / s, "median_s": s]
            }
            result["prefill"] = prefill
        }
        if parts.contains("generate") {
            let prompt = ids(16)
            let gen = Generator(model: m)
            _ = gen.generate(prompt: prompt, maxNewTokens: 4)
            let s = median((0 ..< repeats).map { _ in time { _ = gen.generate(prompt: prompt, maxNewTokens: 64) } })
            result["generate_16+64"] = ["tokens_per_s": 64 / s, "median_s": s]
        }
        if parts.contains("train") {
            let lora = LoRAConfig(rank: 16, alpha: 32, dropout: 0, targetModules: LoRAConfig.allLinear)
            try m.attachLoRA(lora, seed: 0)
            let step = TrainingStep(model: m, gradientCheckpointing: gradientCheckpointing)
            let optimizer = AdapterOptimizer(model: m, weightDecay: 0)
            let mb = MicroBatch(sequences: (0 ..< trainBatch).map { _ in let t = ids(trainSeq); return (t, t) })
            var times: [Double] = []
            for i in 0 ... trainSteps {
                let s = time {
                    _ = step.accumulate(mb, gradScale: 1 / Float(mb.targetCount))
                    optimizer.update(lr: 1e-4, maxGradNorm: 1)
                }
                if i > 0 { times.append(s) }  // the first step warms caches and allocator
            }
            result["train_lora_r16_all_linear"] = [
                "batch": trainBatch, "seq": trainSeq, "gradient_checkpointing": gradientCheckpointing,
                "tokens_per_s": Double(trainBatch * trainSeq) / median(times), "median_step_s": median(times),
            ]
        }
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        result["peak_rss_mib"] = Double(usage.ru_maxrss) / 1024
        if json { printJSON(result) } else {
            let data = try JSONSerialization.data(withJSONObject: result, options: [.prettyPrinted, .sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        }
    }
}
