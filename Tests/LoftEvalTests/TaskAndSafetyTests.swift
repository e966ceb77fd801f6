import Foundation
import XCTest
@testable import LoftEval
import LoftTemplates

final class TaskAndSafetyTests: XCTestCase {
    func tempDir() throws -> URL {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("loft-eval-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        return d
    }

    func testLMEvalTaskContextsAsLMEvalBuildsThem() throws {
        let d = try tempDir()
        defer { try? FileManager.default.removeItem(at: d) }
        let rows = [
            #"{"question": "2+2?", "choices": ["3", "4"], "answer": 1}"#,
            #"{"question": "Capital of France?", "choices": ["Paris", "Rome"], "answer": 0}"#,
            #"{"question": "Sky colour?", "choices": ["blue", "green"], "answer": 0}"#,
        ]
        try rows.joined(separator: "\n").write(to: d.appendingPathComponent("mc.jsonl"), atomically: true, encoding: .utf8)
        try """
        task: tiny_mc
        dataset_path: json
        dataset_kwargs:
          data_files:
            test: mc.jsonl
        test_split: test
        output_type: multiple_choice
        description: "Answer the questions.\\n\\n"
        doc_to_text: "Question: {{question}}\\nAnswer:"
        doc_to_choice: "{{choices}}"
        doc_to_target: answer
        num_fewshot: 1
        fewshot_config:
          sampler: first_n
        metric_list:
          - metric: acc
          - metric: acc_norm
        """.write(to: d.appendingPathComponent("task.yaml"), atomically: true, encoding: .utf8)
        let task = try LMEvalTask.load(d.appendingPathComponent("task.yaml").path)
        XCTAssertEqual(task.items.count, 3)
        XCTAssertEqual(task.metrics, ["acc", "acc_norm"])
        // No fewshot_split: lm-eval (0.4.13) takes the shots from the test
        // split as they come, the evaluated doc included (it is its own shot).
        guard case .text(let c0) = task.items[0].prompt, case .text(let c1) = task.items[1].prompt else { return XCTFail() }
        XCTAssertEqual(c0, "Answer the questions.\n\nQuestion: 2+2?\nAnswer: 4\n\nQuestion: 2+2?\nAnswer:")
        XCTAssertEqual(c1, "Answer the questions.\n\nQuestion: 2+2?\nAnswer: 4\n\nQuestion: Capital of France?\nAnswer:")
        // `fewshot_split: test` named: the evaluated doc leaves its own pool.
        try String(contentsOf: d.appendingPathComponent("task.yaml")).replacingOccurrences(of: "test_split: test", with: "test_split: test\nfewshot_split: test")
            .write(to: d.appendingPathComponent("named.yaml"), atomically: true, encoding: .utf8)
        let named = try LMEvalTask.load(d.appendingPathComponent("named.yaml").path)
        guard case .text(let n0) = named.items[0].prompt else { return XCTFail() }
        XCTAssertEqual(n0, "Answer the questions.\n\nQuestion: Capital of France?\nAnswer: Paris\n\nQuestion: 2+2?\nAnswer:")
        XCTAssertEqual(task.items[0].choices, ["3", "4"])
        XCTAssertEqual(task.items[0].gold, 1)

        // A random sampler is refused with the fix.
        try String(contentsOf: d.appendingPathComponent("task.yaml")).replacingOccurrences(of: "sampler: first_n", with: "sampler: default")
            .write(to: d.appendingPathComponent("bad.yaml"), atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try LMEvalTask.load(d.appendingPathComponent("bad.yaml").path)) { XCTAssertTrue("\($0)".contains("first_n")) }
    }

    func testPythonListLiteral() {
        XCTAssertEqual(PythonLiteral.stringList("['a', \"b c\", 'it\\'s']"), ["a", "b c", "it's"])
        XCTAssertNil(PythonLiteral.stringList("not a list"))
    }

    func testDataRowsOfEveryFormat() throws {
        let d = try tempDir()
        defer { try? FileManager.default.removeItem(at: d) }
        let rows = [
            #"{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}], "references": ["hey"]}"#,
            #"{"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}"#,
            #"{"instruction": "Do", "input": "this", "output": "done"}"#,
            #"{"prompt": "The sky is", "completion": " blue"}"#,
            #"{"question": "Q?", "choices": ["x", "y"], "answer": 1}"#,
            #"{"prompt": "Pick", "chosen": "good", "rejected": "bad"}"#,
            // LLaMA-Factory's sharegpt pairs (dpo_en_demo.json)
            #"{"conversations": [{"from": "human", "value": "Which?"}], "chosen": {"from": "gpt", "value": "this"}, "rejected": {"from": "gpt", "value": "that"}}"#,
        ]
        let file = d.appendingPathComponent("rows.jsonl")
        try rows.joined(separator: "\n").write(to: file, atomically: true, encoding: .utf8)
        let items = try EvalData.load(file.path)
        XCTAssertEqual(items.map(\.kind), [.generation, .generation, .generation, .generation, .multipleChoice, .preference, .preference])
        XCTAssertEqual(items[6].chosen, "this")
        XCTAssertEqual(items[6].rejected, "that")
        XCTAssertEqual(items[6].promptText, "user: Which?")
        XCTAssertEqual(items[0].references, ["hello", "hey"])
        XCTAssertEqual(items[2].promptText, "user: Do\nthis")
        XCTAssertEqual(items[5].chosen, "good")

        try #"{"messages": [{"role": "user", "content": "no answer"}]}"#.write(to: file, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try EvalData.load(file.path)) { XCTAssertTrue("\($0)".contains("row 1, field `messages`"), "\($0)") }
    }

    func testRefusalMarkersAndShippedSets() {
        XCTAssertTrue(SafetyEvaluator.isRefusal("I’m sorry, but I can’t help with that."))
        XCTAssertTrue(SafetyEvaluator.isRefusal("I cannot provide instructions for that."))
        XCTAssertFalse(SafetyEvaluator.isRefusal("Sure! To kill a stuck process, run `kill -9 PID`."))
        XCTAssertGreaterThanOrEqual(SafetySets.harmful.count, 24)
        XCTAssertGreaterThanOrEqual(SafetySets.benign.count, 24)
        XCTAssertEqual(Set(SafetySets.harmful).count, SafetySets.harmful.count)
    }

    func testSafetyGateThroughTheRunner() throws {
        // The base refuses every harmful prompt; "loose" complies with all of them.
        let engine = FakeEngine { model, prompt in
            let harmful = SafetySets.harmful.contains { prompt.contains($0) }
            if prompt.contains("Question") { return "answer" }
            return harmful && model == nil ? "I'm sorry, I can't help with that." : "Sure, here you go."
        }
        var options = EvalOptions()
        options.metrics = ["contains"]
        options.safety = SafetyOptions()
        var item = EvalItem(id: 0, kind: .generation, prompt: .chat([["role": "user", "content": "Question"]]))
        item.references = ["answer"]
        let r = try EvalRunner.run(model: EngineEvalModel(engine: engine, adapters: ["loose"]), items: [item], source: "t", options: options)
        XCTAssertEqual(r.safety!.models[0].harmfulRefusalRate, 1)
        XCTAssertEqual(r.safety!.models[1].harmfulRefusalRate, 0)
        XCTAssertEqual(r.verdicts[0].safety, "fail")
        XCTAssertTrue(r.failedGates.contains { $0.contains("safety gate") })
    }

    func testBootstrapPercentileAndDeterminism() {
        XCTAssertEqual(Bootstrap.percentile([1, 2, 3, 4], 2.5), 1.075, accuracy: 1e-12)   // numpy.percentile
        XCTAssertEqual(Bootstrap.percentile([1, 2, 3, 4], 97.5), 3.925, accuracy: 1e-12)
        let b = Bootstrap(resamples: 50, seed: 3)
        XCTAssertEqual(b.indexSets(count: 10), b.indexSets(count: 10))
        XCTAssertNotEqual(b.indexSets(count: 10), Bootstrap(resamples: 50, seed: 4).indexSets(count: 10))
        // A constant difference has a degenerate interval at that difference.
        let m = Metric.all["contains"]!
        let a = (0 ..< 10).map { [$0 % 2 == 0 ? 1.0 : 0] }, c = (0 ..< 10).map { _ in [1.0] }
        let ci = b.pairedInterval(m, a: a, b: c, indexSets: b.indexSets(count: 10))
        XCTAssertGreaterThan(ci.low, 0); XCTAssertLessThanOrEqual(ci.high, 1)
        // lm-eval's mean_stderr: sample standard deviation over sqrt(n).
        XCTAssertEqual(b.standardError(m, a, indexSets: []), (0.25 * 10 / 9 / 10).squareRoot(), accuracy: 1e-12)
    }
}
