import Foundation
import XCTest
import LoftFormats
import LoftModels
import LoftTensors
@testable import LoftTraining

/// The memory planner: its size formulas against the buffers the code really
/// allocates, its per-storage accounting, and what it says fits.
final class MemoryPlanTests: XCTestCase {
    let tinyLlama = TestPaths.repoRoot.appendingPathComponent("Tests/LoftModelsTests/Fixtures/tiny/llama").path
    let tinyQwen3 = TestPaths.repoRoot.appendingPathComponent("Tests/LoftModelsTests/Fixtures/tiny/qwen3").path

    /// Bytes of every Tensor property of an object (one level, as Mirror sees it).
    static func tensorBytes(_ object: Any) -> Int {
        Mirror(reflecting: object).children.reduce(0) { total, child in
            if let t = child.value as? Tensor { return total + t.byteCount }
            if let t = child.value as? Tensor?, let t { return total + t.byteCount }
            return total
        }
    }

    func testActivationFormulasMatchTheAllocatedBuffers() throws {
        // Gemma 2's sandwich norms, Phi-3's fused projections: buffers of their own.
        let fixtures = TestPaths.repoRoot.appendingPathComponent("Tests/LoftModelsTests/Fixtures/tiny")
        for path in [tinyLlama, tinyQwen3, fixtures.appendingPathComponent("gemma2").path, fixtures.appendingPathComponent("phi3").path] {
            let c = try ModelLoader.open(path).config
            for n in [1, 7, 40] {
                let s = LayerActivations(config: c, tokens: n, backend: CPUBackend.shared, training: true)
                XCTAssertEqual(Self.tensorBytes(s), 4 * LayerActivations.trainingElementCount(config: c, tokens: n), "\(path) n=\(n)")
                let g = LayerGradients(config: c, tokens: n, backend: CPUBackend.shared)
                XCTAssertEqual(Self.tensorBytes(g), 4 * LayerGradients.elementCount(config: c, tokens: n), "\(path) n=\(n)")
            }
        }
    }

    /// The plan's base weights and LoRA parameters are what the model holds,
    /// for dense, fused (Phi-3) and sparse (Qwen3-MoE with a dense layer, Mixtral) models.
    func testPlanCountsTheModelsParameters() throws {
        let fixtures = TestPaths.repoRoot.appendingPathComponent("Tests/LoftModelsTests/Fixtures/tiny")
        for name in ["llama", "phi3", "qwen3_moe", "mixtral"] {
            let (model, _) = try ModelLoader.load(fixtures.appendingPathComponent(name).path)
            let c = model.config
            var held = model.baseEmbedding.count + (c.tieWordEmbeddings ? 0 : model.baseLMHead.count) + model.finalNorm.count
            for layer in model.layers {
                held += layer.attentionNorm.count + layer.mlpNorm.count + (layer.qNorm?.count ?? 0) + (layer.kNorm?.count ?? 0)
                held += layer.allProjections.reduce(0) { $0 + $1.1.inFeatures * $1.1.outFeatures } + (layer.moe?.router.count ?? 0)
            }
            XCTAssertEqual(c.parameterCount, held, name)
            let lora = LoRAConfig(rank: 4, alpha: 8)
            let plan = MemoryPlan(model: c, lora: lora, microBatchSize: 1, sequenceLen: 16, gradientCheckpointing: false,
                                  momentStorage: .float32, base: .f32,
                                  source: ModelSourceInfo(fileBytes: 0, weightsBorrowedFromMap: false, projectionFileBytes: 0, vocabularySize: 256))
            XCTAssertEqual(plan.parts.first { $0.name == "base weights" }!.bytes, 4 * held, name)
            try model.attachLoRA(lora, seed: 1)
            let adapted = model.adapterSlots.reduce(0) { $0 + $1.lora.a.count + $1.lora.b.count }
            XCTAssertEqual(plan.parts.first { $0.name == "LoRA weights" }!.bytes, 4 * adapted, name)
        }
    }

    /// What one layer's adapters keep after a training forward, with and
    /// without dropout (without, the input is the layer's own buffer).
    func testLoRASavedStateMatchesTheFormula() throws {
        let phi3 = TestPaths.repoRoot.appendingPathComponent("Tests/LoftModelsTests/Fixtures/tiny/phi3").path
        for (path, dropout) in [(tinyLlama, 0.0), (tinyLlama, 0.1), (phi3, 0.1)] {
            let (model, _) = try ModelLoader.load(path)
            let c = model.config
            let rank = 4
            _ = try model.attachLoRA(LoRAConfig(rank: rank, alpha: 8, dropout: dropout), seed: 3)
            let n = 11
            let ids: [Int32] = (0 ..< n).map { Int32($0 * 5 % c.vocabSize) }
            let batch = model.batch(ids: ids)
            let x = model.embed(batch)
            let adapted = Set(model.adapterSlots.compactMap { LoRAConfig.shortNames[$0.module] })
            XCTAssertEqual(adapted.count, c.fusedProjections ? 4 : 7)
            let s = LayerActivations(config: c, tokens: n, backend: model.backend, training: true, adapted: adapted)
            model.forwardLayer(0, x: x, batch: batch, saved: s)
            let layerStorages = Mirror(reflecting: s).children.compactMap { ($0.value as? Tensor)?.storage }
            for (name, saved) in s.lora {
                var bytes = saved.scaledProjection!.byteCount + (saved.dropoutMask?.byteCount ?? 0)
                let input = saved.input!
                if !layerStorages.contains(where: { $0 === input.storage }) { bytes += input.byteCount }
                let inFeatures = c.projectionShapes[name]!.inFeatures
                XCTAssertEqual(bytes, 4 * LayerActivations.loraSavedElementCount(tokens: n, inFeatures: inFeatures, rank: rank,
                                                                                 dropout: dropout > 0), "\(name), dropout \(dropout)")
            }
        }
    }

    func smolConfig(_ extra: String = "") throws -> TrainConfig {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("loft-plan-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        try #"{"instruction": "a", "input": "", "output": "b"}"#.write(toFile: dir + "/d.jsonl", atomically: true, encoding: .utf8)
        try """
        base_model: \(TestPaths.smolLM2)
        datasets: [{path: d.jsonl, type: alpaca}]
        sequence_len: 512
        lora_r: 16
        lora_target_linear: true
        micro_batch_size: 2
        \(extra)
        """.write(toFile: dir + "/c.yaml", atomically: true, encoding: .utf8)
        return try TrainConfig.load(path: dir + "/c.yaml")
    }

    /// Base weights by storage, against the GGUF file's own tensor directory.
    func testBaseWeightAccountingPerStorage() throws {
        let planner = try MemoryPlanner(config: try smolConfig())
        let gguf = try GGUFFile(path: TestPaths.smolLM2)
        let projectionSuffixes = ["attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight",
                                  "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight"]
        let projections = gguf.tensors.filter { t in projectionSuffixes.contains { t.name.hasSuffix($0) } }
        let projectionParams = projections.reduce(0) { $0 + $1.elementCount }
        let allParams = gguf.tensors.reduce(0) { $0 + $1.elementCount }
        let rest = allParams - projectionParams
        func baseBytes(_ storage: BaseWeightStorage) throws -> Int {
            try MemoryPlanner(config: try smolConfig(), base: storage).plan().parts.first { $0.name == "base weights" }!.bytes
        }
        XCTAssertEqual(planner.plan().parts.first { $0.name == "base weights" }!.bytes, 4 * allParams, "f32: 4 B for every parameter")
        XCTAssertEqual(try baseBytes(.bf16), 2 * projectionParams + 4 * rest, "bf16: 2 B per projection parameter; embeddings and norms stay f32")
        let rows = projections.reduce(0) { $0 + $1.shape[0] }
        XCTAssertEqual(try baseBytes(.int8), projectionParams + 4 * rows + 4 * rest, "int8: 1 B/param + an f32 scale per row")
        let perParamNF4 = Double(try baseBytes(.nf4(doubleQuant: false)) - 4 * rest) / Double(projectionParams)
        let expectedNF4: Double = 0.5 + 4.0 / 64
        XCTAssertEqual(perParamNF4, expectedNF4, accuracy: 1e-4, "NF4: 4 bits + an f32 absmax per 64")
        let perParamDQ = Double(try baseBytes(.nf4(doubleQuant: true)) - 4 * rest) / Double(projectionParams)
        let expectedDQ: Double = 0.5 + 1.0 / 64 + 4.0 / 16384
        XCTAssertEqual(perParamDQ, expectedDQ, accuracy: 1e-4, "double quant: 8-bit absmax + f32 per 256")
        let projectionFileBytes = projections.reduce(0) { $0 + $1.byteCount }
        XCTAssertEqual(try baseBytes(.ggufKept), projectionFileBytes + 4 * rest, "GGUF blocks as in the file")
    }

    func testOptimizerStateAccounting() throws {
        let f32 = try MemoryPlanner(config: try smolConfig()).plan()
        let eight = try MemoryPlanner(config: try smolConfig("optimizer: adamw_8bit")).plan()
        let loraParams = f32.parts.first { $0.name == "LoRA weights" }!.bytes / 4
        XCTAssertEqual(f32.parts.first { $0.name == "optimizer state" }!.bytes, 8 * loraParams)
        // r=16 on SmolLM2: every A and B has ≥ 4096 elements except k/v's B (64 × 16 = 1024 < 4096).
        let eightBytes = eight.parts.first { $0.name == "optimizer state" }!.bytes
        let perParam = Double(eightBytes) / Double(loraParams)
        let floor: Double = 2 + 8.0 / 256
        XCTAssertGreaterThan(perParam, floor)
        XCTAssertLessThan(perParam, 2.3)
    }

    func testCheckpointingShrinksActivationsAndFitIsTheLargestThatFits() throws {
        let planner = try MemoryPlanner(config: try smolConfig())
        let gc = try MemoryPlanner(config: try smolConfig("gradient_checkpointing: true"))
        let act = { (p: MemoryPlan) in p.parts.first { $0.name == "activations" }!.bytes }
        XCTAssertLessThan(act(gc.plan()) * 5, act(planner.plan()))
        let budget = 3 << 30
        let fit = planner.fit(budget: budget)
        let mbs = try XCTUnwrap(fit.largestMicroBatchSize)
        XCTAssertLessThanOrEqual(planner.plan(microBatchSize: mbs).peakBytes, budget)
        XCTAssertGreaterThan(planner.plan(microBatchSize: mbs + 1).peakBytes, budget)
        let seq = try XCTUnwrap(fit.largestSequenceLen)
        XCTAssertLessThanOrEqual(planner.plan(sequenceLen: seq).peakBytes, budget)
        XCTAssertGreaterThan(planner.plan(sequenceLen: seq + 1).peakBytes, budget)
        XCTAssertNil(planner.fit(budget: 100 << 20).largestMicroBatchSize, "the weights alone need more than 100 MiB")
        // A GPU plan uses bf16 activations: half the CPU's.
        XCTAssertEqual(act(planner.plan(target: .gpu(name: "x", bytes: 1 << 34))) * 2, act(planner.plan()))
    }

    func testAutoMicroBatchPicksTheLargestThatFitsItsShare() throws {
        var config = try smolConfig()
        config.autoMicroBatch = true
        let planner = try MemoryPlanner(config: config)
        let free = 3 << 30, held = 100 << 20
        let chosen = try TrainingRun.autoMicroBatchSize(planner: planner, availableBytes: free, residentBytes: held)
        let budget = Double(free + held) * TrainingRun.autoMicroBatchBudgetShare
        XCTAssertLessThanOrEqual(Double(planner.plan(microBatchSize: chosen).peakBytes), budget)
        XCTAssertGreaterThan(Double(planner.plan(microBatchSize: chosen + 1).peakBytes), budget)
        XCTAssertThrowsError(try TrainingRun.autoMicroBatchSize(planner: planner, availableBytes: 200 << 20, residentBytes: 0)) {
            XCTAssertTrue("\($0)".contains("sequence_len"), "\($0)")
        }
    }

    func testParseBytes() {
        XCTAssertEqual(MemoryPlan.parseBytes("24GB"), 24 << 30)
        XCTAssertEqual(MemoryPlan.parseBytes("16 GiB"), 16 << 30)
        XCTAssertEqual(MemoryPlan.parseBytes("512mb"), 512 << 20)
        XCTAssertEqual(MemoryPlan.parseBytes("1.5G"), 3 << 29)
        XCTAssertEqual(MemoryPlan.parseBytes("4096"), 4096)
        XCTAssertNil(MemoryPlan.parseBytes("lots"))
        XCTAssertNil(MemoryPlan.parseBytes("-3GB"))
    }
}

/// What loft_run.json records about the run's inputs.
final class RunMetadataTests: XCTestCase {
    func testProcessMemoryFieldsParse() throws {
        XCTAssertEqual(ProcessMemory.field("VmHWM:", in: "VmPeak:\t  10 kB\nVmHWM:\t  123456 kB\n"), 123456 * 1024)
        XCTAssertEqual(ProcessMemory.field("MemAvailable:", in: "MemTotal:  9 kB\nMemAvailable:   2048 kB\n"), 2048 * 1024)
        #if os(Linux)
        // The process's own high-water mark, not getrusage's (which survives execve).
        let hwm = try XCTUnwrap(ProcessMemory.procStatus("VmHWM:"), "VmHWM is read from /proc/self/status")
        XCTAssertEqual(ProcessMemory.peakResidentBytes(), hwm)
        XCTAssertGreaterThanOrEqual(hwm, try XCTUnwrap(ProcessMemory.residentBytes()))
        #endif
    }

    /// The base model's hash is the file's SHA-256 (FIPS 180-4 vector "abc"),
    /// read in chunks (not mapped, so the run's peak RSS stays its own).
    func testBaseModelHashIsTheFilesSHA256() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("loft-hash-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Data("abc".utf8).write(to: URL(fileURLWithPath: path))
        XCTAssertEqual(try TrainingRun.fileHash(path), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        // Many blocks: 1,000,000 × "a" (FIPS vector); the real model (several read chunks) is checked in PeakMemoryTests.
        try Data(repeating: UInt8(ascii: "a"), count: 1_000_000).write(to: URL(fileURLWithPath: path))
        XCTAssertEqual(try TrainingRun.fileHash(path), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }
}
