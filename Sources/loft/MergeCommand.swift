import ArgumentParser
import Foundation
import LoftModels

struct MergeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Fold a LoRA adapter into its base model and write a Hugging Face directory.")

    @Argument(help: "The base model: a Hugging Face directory or a .gguf file.")
    var model: String

    @Option(help: "The LoRA adapter directory (PEFT or mlx-lm format) to merge; repeat it to apply several in sequence (an SFT adapter, then a DPO adapter trained over it with base_adapter); without one the base is written as float weights (e.g. a bitsandbytes-quantized checkpoint dequantized).")
    var adapter: [String] = []

    @Option(help: "Output directory (must be empty or absent unless --overwrite).")
    var out: String

    @Option(help: "Element type of the written weights: bf16, fp16 or fp32 (default: the source's; fp32 for a GGUF).")
    var dtype: String?

    @Option(name: .customLong("max-shard-size"), help: "Largest shard in bytes before the checkpoint is split.")
    var maxShardSize = 2_000_000_000

    @Flag(help: "Replace a non-empty --out.")
    var overwrite = false

    @Flag(help: "Print JSON.")
    var json = false

    func validate() throws {
        if let dtype, MergeDType(rawValue: dtype) == nil {
            throw ValidationError("--dtype \(dtype): use bf16, fp16 or fp32")
        }
        if maxShardSize <= 0 { throw ValidationError("--max-shard-size must be positive") }
    }

    func run() throws {
        try TrainRecording.job(kind: "export", name: "merge", adapter: adapter.isEmpty ? nil : adapter.joined(separator: " + "), output: out) { try write() }
    }

    func write() throws {
        let options = ModelMerger.Options(dtype: dtype.flatMap(MergeDType.init(rawValue:)), overwrite: overwrite,
                                          maxShardBytes: maxShardSize)
        let report = try ModelMerger.merge(modelPath: try localModel(model), adapters: adapter, to: out, options: options)
        if json {
            printJSON(["directory": report.directory, "dtype": report.dtype.rawValue, "shards": report.shards,
                       "merged_projections": report.mergedProjections, "tensors": report.tensors,
                       "tokenizer_files": report.tokenizerFiles, "notes": report.notes])
        } else {
            print("merged \(report.mergedProjections) projections into \(report.tensors) tensors (\(report.dtype.rawValue)) → \(report.directory)")
            print("weights: \(report.shards.joined(separator: ", "))")
            print("tokenizer: \(report.tokenizerFiles.isEmpty ? "none" : report.tokenizerFiles.joined(separator: ", "))")
            for n in report.notes { print("note: \(n)") }
        }
    }
}
