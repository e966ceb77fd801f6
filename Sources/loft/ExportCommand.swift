import ArgumentParser
import Foundation
import LoftFormats
import LoftModels

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write a model (with an adapter merged) or an adapter for llama.cpp and Ollama.",
        subcommands: [ExportGGUFCommand.self])
}

struct ExportGGUFCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gguf",
        abstract: "Write a GGUF file llama.cpp loads, with a LoRA adapter merged in fp32 when given.")

    @Argument(help: "A Hugging Face model directory or a .gguf file.")
    var model: String

    @Option(help: "A LoRA adapter directory (PEFT format) to merge before writing.")
    var adapter: String?

    @Option(help: "Tensor type of the 2-D weights: f32, f16, bf16, q8_0 or q4_0 (norms stay f32).")
    var quant = "f16"

    @Option(help: "The .gguf file to write.")
    var out: String

    @Flag(help: "Replace an existing --out.")
    var overwrite = false

    @Flag(help: "Print JSON.")
    var json = false

    func validate() throws {
        if GGUFExporter.quantTypes[quant.lowercased()] == nil {
            throw ValidationError("--quant \(quant): use one of f32, f16, bf16, q8_0, q4_0 (K-quants are not written yet)")
        }
    }

    func run() throws {
        let report = try GGUFExporter.export(modelPath: model, adapter: adapter, to: out,
                                             type: GGUFExporter.quantTypes[quant.lowercased()]!, overwrite: overwrite)
        if json {
            printJSON(["path": report.path, "type": report.type.description, "tensors": report.tensors,
                       "merged_projections": report.mergedProjections, "bytes": report.bytes, "notes": report.notes])
        } else {
            print("wrote \(report.path): \(report.tensors) tensors, \(report.type), \(report.bytes / 1_000_000) MB\(report.mergedProjections > 0 ? ", \(report.mergedProjections) LoRA projections merged" : "")")
            for n in report.notes { print("note: \(n)") }
        }
    }
}
