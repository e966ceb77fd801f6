import ArgumentParser
import Foundation
import LoftTraining

struct PlanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Predict a training run's peak memory, part by part, and what fits in a given memory.")

    @Argument(help: "The YAML config (the one `loft train` takes).")
    var config: String

    @Option(name: .customLong("set"), help: "Override a config key, e.g. --set micro_batch_size=4 (repeatable).")
    var overrides: [String] = []

    @Option(help: "Memory to fit into, e.g. 24GB (GB = GiB). Default: this machine's available memory, and a table of common GPUs.")
    var memory: String?

    @Option(help: "Plan for: cpu (Loft's f32 CPU backend) or gpu (bf16 activations, a CUDA context).")
    var target: String = "cpu"

    @Option(help: "Base weight storage to plan for instead of the config's: f32, bf16, int8, nf4, nf4-double-quant, gguf.")
    var base: String?

    @Flag(help: "Print one JSON object.")
    var json = false

    func run() throws {
        let cfg = try TrainConfig.load(path: config, overrides: overrides)
        var storage: BaseWeightStorage?
        if let base {
            let known: [String: BaseWeightStorage] = ["f32": .f32, "bf16": .bf16, "int8": .int8, "nf4": .nf4(doubleQuant: false),
                                                      "nf4-double-quant": .nf4(doubleQuant: true), "gguf": .ggufKept]
            guard let s = known[base] else {
                throw ValidationError("--base \(base): use one of f32, bf16, int8, nf4, nf4-double-quant, gguf")
            }
            storage = s
        }
        guard target == "cpu" || target == "gpu" else { throw ValidationError("--target \(target): use cpu or gpu") }
        var budget: Int?
        if let memory {
            guard let b = MemoryPlan.parseBytes(memory) else {
                throw ValidationError("--memory \(memory): give a size such as 24GB, 16GiB or 512MB")
            }
            budget = b
        }
        let planner = try MemoryPlanner(config: cfg, base: storage)
        let machine: MemoryTarget = target == "gpu" ? .gpu(name: "GPU", bytes: budget ?? (24 << 30)) : .cpu
        let plan = planner.plan(target: machine)
        let cpuBudget = budget ?? ProcessMemory.availableBytes()

        var fits: [(name: String, bytes: Int, target: MemoryTarget)] = []
        if let b = budget { fits.append((memory ?? "", b, machine)) } else {
            if let b = cpuBudget { fits.append(("this machine (MemAvailable)", b, .cpu)) }
            for g in MemoryTarget.knownGPUs { fits.append((g.name, g.bytes, .gpu(name: g.name, bytes: g.bytes))) }
        }
        let results = fits.map { f in (f, planner.fit(target: f.target, budget: f.bytes)) }

        if json {
            var fitObjects: [[String: Any]] = []
            for (f, r) in results {
                var o: [String: Any] = ["name": f.name, "bytes": f.bytes,
                                        "predicted_peak_bytes": planner.plan(target: f.target).peakBytes]
                o["target"] = { if case .gpu = f.target { return "gpu" } else { return "cpu" } }()
                o["largest_micro_batch_size"] = r.largestMicroBatchSize ?? NSNull()
                o["largest_sequence_len"] = r.largestSequenceLen ?? NSNull()
                fitObjects.append(o)
            }
            printJSON(["target": target, "micro_batch_size": plan.microBatchSize, "sequence_len": plan.sequenceLen,
                       "gradient_checkpointing": plan.gradientCheckpointing, "base_storage": planner.base.label,
                       "parts": plan.parts.map { ["name": $0.name, "bytes": $0.bytes, "detail": $0.detail] },
                       "training_peak_bytes": plan.trainingPeakBytes, "loading_peak_bytes": plan.loadingPeakBytes,
                       "predicted_peak_bytes": plan.peakBytes, "fits": fitObjects])
            return
        }
        print("\(URL(fileURLWithPath: cfg.baseModel).lastPathComponent) on \(target == "gpu" ? "a GPU (bf16 activations)" : "the CPU (f32)"): "
              + "micro_batch_size \(plan.microBatchSize) × sequence_len \(plan.sequenceLen), "
              + "gradient checkpointing \(plan.gradientCheckpointing ? "on" : "off"), optimizer \(cfg.optimizer)")
        if let p = cfg.preference {  // rl: the plan counts sequences, two per pair
            let objective = p.objective()
            print("preference (\(objective.name)): \(planner.sequencesPerExample) sequence\(planner.sequencesPerExample == 1 ? "" : "s") per example, "
                  + "so \(cfg.microBatchSize) example\(cfg.microBatchSize == 1 ? "" : "s") per micro-batch are \(plan.microBatchSize) sequences; reference: "
                  + (objective.usesReference ? (p.precomputeReference ? "precomputed once and cached on disk" : "the same model with its adapter switched off, forward only (no second copy)") : "none"))
        }
        for p in plan.parts {
            print("  " + p.name.padding(toLength: 22, withPad: " ", startingAt: 0)
                  + MemoryPlan.format(p.bytes).leftPadded(12) + "  " + p.detail)
        }
        print("  " + "training peak".padding(toLength: 22, withPad: " ", startingAt: 0) + MemoryPlan.format(plan.trainingPeakBytes).leftPadded(12))
        if plan.loadingPeakBytes > 0 {
            print("  " + "loading peak".padding(toLength: 22, withPad: " ", startingAt: 0) + MemoryPlan.format(plan.loadingPeakBytes).leftPadded(12)
                  + "  the model file is mapped while its weights are built")
        }
        print("  " + "predicted peak".padding(toLength: 22, withPad: " ", startingAt: 0) + MemoryPlan.format(plan.peakBytes).leftPadded(12))
        print("")
        print("what fits (largest micro_batch_size at sequence_len \(cfg.sequenceLen); largest sequence_len at micro_batch_size \(cfg.microBatchSize)):")
        for (f, r) in results {
            let mbs = r.largestMicroBatchSize.map(String.init) ?? "does not fit"
            let seq = r.largestSequenceLen.map(String.init) ?? "does not fit"
            print("  " + f.name.padding(toLength: 30, withPad: " ", startingAt: 0) + MemoryPlan.format(f.bytes).leftPadded(11)
                  + "  micro_batch_size " + mbs.leftPadded(12) + "   sequence_len " + seq.leftPadded(12))
        }
        if budget == nil {
            print("GPU rows assume bf16 activations and a CUDA context (Loft's backends today are CPU; the rows are for planning).")
        }
    }
}

extension String {
    func leftPadded(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}
