import ArgumentParser
import Foundation
import LoftFormats
import LoftInference
import LoftModels

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write a model (with an adapter merged) or an adapter for llama.cpp and Ollama.",
        subcommands: [ExportGGUFCommand.self, ExportGGUFLoRACommand.self, ExportOllamaCommand.self])
}

/// What `export gguf` and `export ollama` both take: the model, an adapter to
/// merge, and the tensor type of the 2-D weights.
struct ModelExportFlags: ParsableArguments {
    @Argument(help: "A Hugging Face model directory or a .gguf file.")
    var model: String

    @Option(help: "A LoRA adapter directory (PEFT or mlx-lm format) to merge before writing.")
    var adapter: String?

    @Option(help: "File type: f32, f16, bf16, q8_0, q4_0, q4_1, q4_k_m, q5_k_m or q6_k (per-tensor types as llama-quantize picks them; norms stay f32).")
    var quant = "f16"

    func validate() throws {
        if GGUFExporter.quantTypes[quant.lowercased()] == nil {
            throw ValidationError("--quant \(quant): use one of \(GGUFFileType.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }

    /// The validated file type.
    var type: GGUFFileType { GGUFExporter.quantTypes[quant.lowercased()]! }
}

struct ExportGGUFCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gguf",
        abstract: "Write a GGUF file llama.cpp loads, with a LoRA adapter merged in fp32 when given.")

    @OptionGroup var source: ModelExportFlags

    @Option(help: "The .gguf file to write.")
    var out: String

    @Flag(help: "Replace an existing --out.")
    var overwrite = false

    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        try TrainRecording.job(kind: "export", name: "gguf \(source.quant)", adapter: source.adapter, output: out) { try write() }
    }

    func write() throws {
        let report = try GGUFExporter.export(modelPath: source.model, adapter: source.adapter, to: out,
                                             type: source.type, overwrite: overwrite)
        if json {
            printJSON(["path": report.path, "type": report.type.description, "tensors": report.tensors, "tensor_types": report.tensorTypes,
                       "merged_projections": report.mergedProjections, "bytes": report.bytes, "notes": report.notes])
        } else {
            print("wrote \(report.path): \(report.tensors) tensors, \(report.type), \(report.bytes / 1_000_000) MB\(report.mergedProjections > 0 ? ", \(report.mergedProjections) LoRA projections merged" : "")")
            print("tensor types: " + report.tensorTypes.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", "))
            for n in report.notes { print("note: \(n)") }
        }
    }
}

struct ExportGGUFLoRACommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gguf-lora",
        abstract: "Write a LoRA adapter as a llama.cpp LoRA GGUF (for llama-cli --lora).")

    @Option(help: "The LoRA adapter directory (PEFT or mlx-lm format).")
    var adapter: String

    @Option(help: "The base model it was trained on (HF directory or .gguf).")
    var base: String

    @Option(help: "The .gguf file to write.")
    var out: String

    @Flag(help: "Replace an existing --out.")
    var overwrite = false

    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        let r = try GGUFLoRAExporter.export(adapter: adapter, base: base, to: out, overwrite: overwrite)
        if json {
            printJSON(["path": r.path, "tensors": r.tensors, "alpha": r.alpha, "rank": r.rank])
        } else {
            print("wrote \(r.path): \(r.tensors) tensors, r=\(r.rank), alpha=\(r.alpha)")
        }
    }
}

struct ExportOllamaCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ollama",
        abstract: "Write a GGUF and a Modelfile (TEMPLATE, stop parameters) for `ollama create`.")

    @OptionGroup var source: ModelExportFlags

    @Option(help: "Output directory (must be empty or absent unless --overwrite).")
    var out: String

    @Flag(help: "Replace a non-empty --out.")
    var overwrite = false

    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        try TrainRecording.job(kind: "export", name: "ollama \(source.quant)", adapter: source.adapter, output: out) { try write() }
    }

    func write() throws {
        let r = try OllamaExporter.export(modelPath: source.model, adapter: source.adapter, to: out,
                                          type: source.type, overwrite: overwrite)
        if json {
            printJSON(["directory": r.directory, "gguf": r.gguf.path, "template": r.format, "notes": r.gguf.notes])
        } else {
            print("wrote \(r.directory)/model.gguf and \(r.directory)/Modelfile (\(r.format) template)")
            print("then: ollama create NAME -f \(r.directory)/Modelfile")
        }
    }
}
