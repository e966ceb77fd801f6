import ArgumentParser
import Foundation
import LoftFormats
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

    @Option(help: "Which parts to run: gemm, prefill, generate, train, decode (comma-separated; decode: GGUF-block GEMV GB/s per format against memory bandwidth, and generation on the compact base against its f32 copy).")
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

    @Option(help: "Training compute precision: fp32, or bf16 (GEMM inputs rounded to bf16, fp32 accumulation: on the AVX512-BF16 kernel where this CPU runs it faster).")
    var precision = "fp32"

    @Flag(help: "Print JSON.")
    var json = false

    @Flag(help: "With train: one more step through a timing backend, broken down by operation and shape (time, share of the step, GFLOP/s).")
    var profile = false

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
            result["gemm_bf16"] = bf16GEMMs()
            if parts == ["gemm"] { return try emit(result) }  // no model needed
        }
        if parts.contains("decode") {
            result["decode_kernels"] = decodeKernels()
            result["decode_generate"] = try decodeGeneration()
            if parts == ["decode"] { return try emit(result) }
        }
        guard let computePrecision = ComputePrecision(rawValue: precision), computePrecision != .fp16 else {
            throw ValidationError("--precision \(precision): use fp32 or bf16")
        }
        let trainBackend: Backend = computePrecision == .fp32 ? CPUBackend.shared : CPUBackend(computePrecision: computePrecision)
        result["precision"] = precision
        result["bf16_gemm"] = CPUKernelChoice.bf16.reason
        result["cpu"] = CPUKernelChoice.cpuModel()
        let loadStart = Date()
        let (m, _) = try ModelLoader.load(model, backend: trainBackend)
        result["load_s"] = Date().timeIntervalSince(loadStart)
        result["params"] = m.config.parameterCount
        var rng = SystemRandomNumberGenerator()
        func ids(_ n: Int) -> [Int32] { (0 ..< n).map { _ in Int32.random(in: 100 ..< 10000, using: &rng) } }

        if parts.contains("prefill") {
            var prefill: [String: Any] = [:]
            for (batch, seq) in [(1, 40), (1, 128), (4, 128)] {  // 40: a short chat turn
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
            let mb = MicroBatch(sequences: (0 ..< trainBatch).map { _ in let t = ids(trainSeq); return (t, t) })
            let trainStep = try optimizerStep(m, batch: mb)
            var times: [Double] = []
            for i in 0 ... trainSteps {
                let s = time(trainStep)
                if i > 0 { times.append(s) }  // the first step warms caches and allocator
            }
            result["train_lora_r16_all_linear"] = [
                "batch": trainBatch, "seq": trainSeq, "gradient_checkpointing": gradientCheckpointing,
                "tokens_per_s": Double(trainBatch * trainSeq) / median(times), "median_step_s": median(times),
            ]
            if profile { result["train_profile"] = try trainProfile(batch: mb, on: trainBackend) }
        }
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        result["peak_rss_mib"] = Double(usage.ru_maxrss) / 1024
        try emit(result)
    }

    /// GB/s of the GGUF-block kernels (`QuantizedDecoding`) on a weight larger
    /// than the caches, for 1, 4 and 16 rows of x, int8 and f32 modes, beside
    /// the machine's read bandwidth (all threads summing a 256 MiB buffer) and
    /// sgemv on the same weight in f32. Best of the repeats.
    func decodeKernels() -> [String: Any] {
        let (rows, cols) = (16384, 4096)
        var rng = SplitMix64(seed: 7)
        func best(_ body: () -> Void) -> Double { body(); return (0 ..< max(repeats, 5)).map { _ in time(body) }.min()! }
        // read bandwidth
        let floats = 64 << 20
        let big = UnsafeMutablePointer<Float>.allocate(capacity: floats)
        defer { big.deallocate() }
        big.initialize(repeating: 1, count: floats)
        let threads = ProcessInfo.processInfo.activeProcessorCount
        var sums = [Float](repeating: 0, count: threads)
        let readS = best {
            sums.withUnsafeMutableBufferPointer { out in
                DispatchQueue.concurrentPerform(iterations: threads) { t in
                    let lo = floats * t / threads, hi = floats * (t + 1) / threads
                    var s0: Float = 0, s1: Float = 0, s2: Float = 0, s3: Float = 0
                    var i = lo
                    while i + 4 <= hi { s0 += big[i]; s1 += big[i + 1]; s2 += big[i + 2]; s3 += big[i + 3]; i += 4 }
                    out[t] = s0 + s1 + s2 + s3
                }
            }
        }
        var out: [String: Any] = ["read_bandwidth_gbs": Double(floats * 4) / readS / 1e9, "shape": [rows, cols],
                                  "isa": QuantizedDecoding.isa]
        let x = Tensor.cpu((0 ..< 16 * cols).map { _ in Float.random(in: -1 ... 1, using: &rng) }, shape: [16, cols])
        let y = Tensor.zeros([16, rows])
        for type in [GGMLType.q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q4_K, .q5_K, .q6_K] {
            let bytes = QuantizedDecoding.sampleBlocks(type, rows: rows, cols: cols, using: &rng)
            guard let w = try? FrozenWeight.ggml(type: type, bytes: bytes, rows: rows, cols: cols), let blocks = w.ggmlBlocks else { continue }
            var entry: [String: Any] = ["bytes": bytes.count]
            for mode in QuantizedDecoding.Mode.allCases {
                for n in [1, 4, 16] {
                    let s = best {
                        QuantizedDecoding.multiply(x.floats, rows: n, cols: cols, blocks: blocks, outputs: rows, into: y.floats,
                                                   accumulate: false, mode: mode)
                    }
                    entry["\(mode.rawValue)_rows\(n)_gbs"] = Double(bytes.count) / s / 1e9
                }
            }
            out[type.description] = entry
        }
        let dense = Tensor.cpu((0 ..< rows * cols).map { _ in Float.random(in: -1 ... 1, using: &rng) }, shape: [rows, cols])
        let s = best { CPUBackend.shared.linear(x.rows(0 ..< 1), dense, bias: nil, into: y.rows(0 ..< 1), accumulate: false) }
        out["f32_sgemv_gbs"] = Double(rows * cols * 4) / s / 1e9
        return out
    }

    /// Greedy generation (16 prompt tokens + 64) on the model's GGUF blocks in
    /// place and on their f32 dequantization.
    func decodeGeneration() throws -> [String: Any] {
        var out: [String: Any] = [:]
        let prompt: [Int32] = (0 ..< 16).map { Int32(100 + 37 * $0) }
        for (name, format) in [("compact", ModelLoader.decodingBase(model, requested: .f32, backend: CPUBackend.shared)),
                               ("f32", BaseWeightFormat.f32)] {
            let (m, _) = try ModelLoader.load(model, baseWeights: format)
            m.dequantizeFrozenWeights()
            let gen = Generator(model: m)
            _ = gen.generate(prompt: prompt, maxNewTokens: 4)
            let s = median((0 ..< repeats).map { _ in time { _ = gen.generate(prompt: prompt, maxNewTokens: 64) } })
            out[name] = ["tokens_per_s": 64 / s, "base": format.summary]
        }
        return out
    }

    /// LoRA r=16 on every linear projection of `m`, and one optimizer step of
    /// it on `mb` as a closure (what the training figures time).
    func optimizerStep(_ m: LlamaModel, batch mb: MicroBatch) throws -> () -> Void {
        try m.attachLoRA(LoRAConfig(rank: 16, alpha: 32, dropout: 0, targetModules: LoRAConfig.allLinear), seed: 0)
        let step = TrainingStep(model: m, gradientCheckpointing: gradientCheckpointing)
        let optimizer = AdapterOptimizer(model: m, weightDecay: 0)
        return {
            _ = step.accumulate(mb, gradScale: 1 / Float(mb.targetCount))
            optimizer.update(lr: 1e-4, maxGradNorm: 1)
        }
    }

    /// One training step (after a warm-up step) of a fresh copy of the model on
    /// a timing backend: each operation and shape with its calls, seconds,
    /// share of the step and GFLOP/s; printed as a table on stderr.
    func trainProfile(batch mb: MicroBatch, on backend: Backend) throws -> [String: Any] {
        let profiler = ProfilingBackend(backend)
        let (m, _) = try ModelLoader.load(model, backend: profiler)
        let once = try optimizerStep(m, batch: mb)
        once()
        profiler.reset()
        let total = time(once)
        let entries = profiler.report()
        let counted = entries.reduce(0) { $0 + $1.seconds }
        var lines = [String(format: "training step profile: %.3f s (%d tokens), %.1f%% inside backend operations", total, mb.ids.count, 100 * counted / total),
                     "  share  seconds  calls  GFLOP/s  operation  shape"]
        var rows: [[String: Any]] = []
        var byOperation: [String: Double] = [:]
        for e in entries {
            byOperation[e.operation, default: 0] += e.seconds
            var row: [String: Any] = ["operation": e.operation, "shape": e.shape, "calls": e.calls, "seconds": e.seconds, "share": e.seconds / total]
            if let g = e.gflops { row["gflops"] = g }
            rows.append(row)
            if e.seconds / total >= 0.002 {
                lines.append(String(format: "  %5.1f%%  %7.4f  %5d  %7@  %@  %@", 100 * e.seconds / total, e.seconds, e.calls,
                                    e.gflops.map { String(format: "%7.1f", $0) } ?? "      -", e.operation, e.shape))
            }
        }
        lines.append("  by operation: " + byOperation.sorted { $0.value > $1.value }
            .map { String(format: "%@ %.1f%%", $0.key, 100 * $0.value / total) }.joined(separator: ", "))
        for l in lines { writeErr(l) }
        return ["step_s": total, "tokens": mb.ids.count, "in_operations_s": counted, "entries": rows,
                "by_operation_s": byOperation]
    }

    func emit(_ result: [String: Any]) throws {
        if json { printJSON(result) } else {
            let data = try JSONSerialization.data(withJSONObject: result, options: [.prettyPrinted, .sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        }
    }

    /// GFLOP/s of OpenBLAS sgemm (through the backend's linear layers) and of
    /// the bf16 kernel (CPUGEMM.bf16, B fp32 and B already bf16) on SmolLM2-135M's
    /// training GEMMs: 512 tokens through 576x576, 1536x576 (up/gate) and
    /// 576x1536 (down) weights, forward X·Wᵀ, backward dY·W and dYᵀ·X. Best of
    /// the repeats, alternating the two so load hits both alike.
    func bf16GEMMs() -> [String: Any] {
        let backend = CPUBackend.shared
        let tokens = 512
        var out: [String: Any] = ["bf16_kernel": CPUGEMM.bf16KernelAvailable,
                                  "vdpbf16ps_flops_per_fma_flop": CPUKernelChoice.measureBF16Ratio()]
        for (rows, cols) in [(576, 576), (1536, 576), (576, 1536)] {
            let x = Tensor.cpu((0 ..< tokens * cols).map { _ in Float.random(in: -1 ... 1) }, shape: [tokens, cols])
            let w = Tensor.cpu((0 ..< rows * cols).map { _ in Float.random(in: -1 ... 1) }, shape: [rows, cols])
            let dy = Tensor.cpu((0 ..< tokens * rows).map { _ in Float.random(in: -1 ... 1) }, shape: [tokens, rows])
            let wBits = w.toArray().map(BFloat16.fromFloat)
            let y = Tensor.zeros([tokens, rows]), dx = Tensor.zeros([tokens, cols]), dw = Tensor.zeros([rows, cols])
            let flops = 2 * Double(tokens * rows * cols)
            // C = op(A) · op(B) by the bf16 kernel, B given as fp32 or as bf16 bits (`wBits`)
            func kernel(_ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ a: Tensor, _ b: Tensor,
                        _ c: Tensor, bitsOfB: Bool = false) -> () -> Void {
                let (lda, ldb) = (transA ? m : k, transB ? k : n)
                return {
                    if bitsOfB {
                        wBits.withUnsafeBufferPointer {
                            CPUGEMM.bf16(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 1, a: a.floats, lda: lda,
                                         b: $0.baseAddress!, ldb: ldb, beta: 0, c: c.floats, ldc: n)
                        }
                    } else {
                        CPUGEMM.bf16(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 1, a: a.floats, lda: lda,
                                     b: b.floats, ldb: ldb, beta: 0, c: c.floats, ldc: n)
                    }
                }
            }
            // (name, sgemm, bf16 with fp32 B, bf16 with bf16 B or nil)
            let cases: [(String, () -> Void, () -> Void, (() -> Void)?)] = [
                ("fwd X·Wᵀ", { backend.linear(x, w, bias: nil, into: y, accumulate: false) },
                 kernel(false, true, tokens, rows, cols, x, w, y), kernel(false, true, tokens, rows, cols, x, w, y, bitsOfB: true)),
                ("bwd dY·W", { backend.linearBackwardInput(dy, w, into: dx, accumulate: false) },
                 kernel(false, false, tokens, cols, rows, dy, w, dx), kernel(false, false, tokens, cols, rows, dy, w, dx, bitsOfB: true)),
                ("bwd dYᵀ·X", { backend.linearBackwardWeight(dy, x, into: dw, accumulate: false) },
                 kernel(true, false, rows, cols, tokens, dy, x, dw), nil),
            ]
            for (name, sgemm, bf16, bf16Weights) in cases {
                var best = [Double](repeating: .infinity, count: 3)
                for _ in 0 ..< max(repeats, 10) {
                    best[0] = min(best[0], time(sgemm))
                    best[1] = min(best[1], time(bf16))
                    if let bf16Weights { best[2] = min(best[2], time(bf16Weights)) }
                }
                var entry = ["sgemm_gflops": flops / best[0] / 1e9, "bf16_gflops": flops / best[1] / 1e9]
                if bf16Weights != nil { entry["bf16_weights_gflops"] = flops / best[2] / 1e9 }
                out["\(name) W \(rows)x\(cols), \(tokens) tokens"] = entry
            }
        }
        return out
    }
}
