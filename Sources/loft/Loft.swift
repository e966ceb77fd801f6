import ArgumentParser
import LoftTensors

@main
enum Main {
    static func main() {
        BLASKernels.reexecWithFastKernelsIfNeeded()
        Loft.main()
    }
}

struct Loft: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "loft",
        abstract: "Fine-tune open-weight LLMs with LoRA and QLoRA, natively.",
        subcommands: [
            InfoCommand.self,
            LogitsCommand.self,
            GenerateCommand.self,
            TokenizeCommand.self,
            DetokenizeCommand.self,
            TemplateCommand.self,
            BenchCommand.self,
            EngineBenchCommand.self,
            TrainCommand.self,
            PlanCommand.self,
            DataCommand.self,
            MergeCommand.self,
            ExportCommand.self,
            ChatCommand.self,
            CUDACommand.self,
            EvalCommand.self,
            ServeCommand.self,
            RunsCommand.self,
            UICommand.self,
        ])
}
