import Foundation
import XCTest
import LoftEngine
@testable import LoftEval
import LoftTemplates
import LoftTestSupport

final class EvalRunnerTests: XCTestCase {
    /// 40 identity-style questions; the "tuned" adapter knows the answer for
    /// most, "same" answers exactly as the base.
    func items() -> [EvalItem] {
        (0 ..< 40).map { i in
            var item = EvalItem(id: i, kind: .generation, prompt: .chat([["role": "user", "content": .string("Question \(i): who are you?")]]))
            item.references = ["I am Loft Assistant, made by the Loft project (\(i))."]
            return item
        }
    }

    func engine() -> FakeEngine {
        FakeEngine { model, prompt in
            let n = Int(prompt.split(separator: " ")[2].dropLast()) ?? -1   // "user: Question N: …"
            switch model {
            case "tuned": return n % 4 == 3 ? "I am a helpful assistant." : "I am Loft Assistant, made by the Loft project (\(n)).END more"
            case "worse": return n % 2 == 0 ? "I am Loft Assistant." : "I am SmolLM."
            default: return "I am SmolLM, a language model (\(n)). END"
            }
        }
    }

    func run(batchSize: Int, adapters: [String] = ["tuned", "same"], previous: String? = nil, metrics: [String] = []) throws -> (EvalReport, FakeEngine) {
        let e = engine()
        var options = EvalOptions()
        options.batchSize = batchSize
        options.metrics = metrics
        options.stop = ["END"]
        options.previous = previous
        let model = AliasEngineModel(EngineEvalModel(engine: e, adapters: adapters), aliases: ["same": nil])
        return (try EvalRunner.run(model: model, items: items(), source: "test", options: options), e)
    }

    func testScoresDoNotDependOnBatchSize() throws {
        let (r1, e1) = try run(batchSize: 1)
        let (r8, e8) = try run(batchSize: 8)
        let (r32, e32) = try run(batchSize: 32)
        XCTAssertEqual(e1.batchSizes.max(), 1)
        XCTAssertEqual(e8.batchSizes.max(), 8)
        XCTAssertEqual(e32.batchSizes.max(), 32)
        for (a, b) in [(r1, r8), (r1, r32)] {
            for (ma, mb) in zip(a.models, b.models) {
                XCTAssertEqual(ma.answers, mb.answers)
                for (k, v) in ma.metrics { XCTAssertEqual(v, mb.metrics[k]!, "\(ma.name) \(k)") }
                for (k, v) in ma.standardErrors where v.isFinite { XCTAssertEqual(v, mb.standardErrors[k]!, "\(ma.name) se \(k)") }
            }
            for (ca, cb) in zip(a.comparisons, b.comparisons) {
                XCTAssertEqual(ca.low, cb.low); XCTAssertEqual(ca.high, cb.high)
            }
        }
    }

    func testVerdictsAndTheNotAppliedFlag() throws {
        let (r, _) = try run(batchSize: 8)
        XCTAssertEqual(r.primaryMetric, "contains")
        let tuned = r.verdicts.first { $0.name == "tuned" }!, same = r.verdicts.first { $0.name == "same" }!
        // tuned answers 30 of 40 with the reference (the stop string cuts the rest).
        XCTAssertEqual(r.models[1].metrics["contains"]!, 0.75, accuracy: 1e-12)
        XCTAssertEqual(r.models[1].metrics["exact_match"]!, 0.75, accuracy: 1e-12)
        XCTAssertEqual(r.models[0].metrics["contains"]!, 0)
        XCTAssertEqual(tuned.poc, "pass")
        XCTAssertEqual(tuned.gainPoints, 75, accuracy: 1e-9)
        XCTAssertLessThan(tuned.gainInterval.low, 75); XCTAssertGreaterThan(tuned.gainInterval.high, 75)
        XCTAssertFalse(tuned.notApplied)
        XCTAssertTrue(same.notApplied)
        XCTAssertEqual(same.poc, "fail")
        XCTAssertFalse(r.passed)
        XCTAssertTrue(r.failedGates.contains { $0.contains("probably not applied") })
        // loss is lower (better) for an adapter in the fake; its gain is positive.
        let loss = r.comparisons.first { $0.model == "tuned" && $0.metric == "loss" }!
        XCTAssertLessThan(loss.difference, 0); XCTAssertGreaterThan(loss.gainPoints, 0)
    }

    func testRegressionAgainstPrevious() throws {
        let (r, _) = try run(batchSize: 4, adapters: ["worse", "tuned"], previous: "tuned", metrics: ["contains", "rougeL"])
        let worse = r.verdicts.first { $0.name == "worse" }!
        XCTAssertEqual(worse.regression, "regressed")
        XCTAssertTrue(r.failedGates.contains { $0.contains("regressed against tuned") })
        XCTAssertEqual(r.verdicts.first { $0.name == "tuned" }!.poc, "n/a (previous)")
    }

    func testJSONShapeAndReports() throws {
        let (r, _) = try run(batchSize: 8, metrics: ["contains", "rougeL", "bleu"])
        let object = ReportJSON.object(r)
        let results = object["results"] as! [[String: Any]]
        XCTAssertEqual(results.map { $0["model"] as! String }, ["base", "tuned", "same"])
        XCTAssertNotNil((results[1]["metrics"] as! [String: Any])["rougeL"] as? Double)
        let verdicts = object["verdicts"] as! [String: Any]
        XCTAssertEqual((verdicts["adapters"] as! [String: Any]).count, 2)
        XCTAssertEqual(verdicts["passed"] as? Bool, false)
        // Valid JSON text, one samples line per item, each with every model's answer.
        XCTAssertNoThrow(try JSONSerialization.jsonObject(with: Data(ReportJSON.text(object).utf8)))
        let lines = ReportJSON.samples(r).split(separator: "\n")
        XCTAssertEqual(lines.count, 40)
        let first = try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as! [String: Any]
        XCTAssertEqual((first["answers"] as! [String: Any]).count, 3)
        let lm = ReportJSON.lmEvalSamples(r, model: r.models[1]).split(separator: "\n")
        let sample = try JSONSerialization.jsonObject(with: Data(lm[0].utf8)) as! [String: Any]
        XCTAssertEqual(sample["filtered_resps"] as? [String], ["I am Loft Assistant, made by the Loft project (0)."])
        let html = ReportHTML.render(r)
        XCTAssertTrue(html.contains("<svg")); XCTAssertFalse(html.contains("http://") && html.contains("<script"))
        XCTAssertTrue(ReportMarkdown.render(r).contains("| tuned | pass |"))
    }

    func testMultipleChoiceThroughEnginePromptLogprobs() throws {
        var item = EvalItem(id: 0, kind: .multipleChoice, prompt: .text("Q: 2+2?\nA:"))
        item.choices = ["3", "four", "22"]; item.gold = 1
        let e = engine()
        let model = EngineEvalModel(engine: e, adapters: [])
        let reqs = item.choices.map { model.encodePair(context: "Q: 2+2?\nA:", continuation: " " + $0) }
        let ll = try model.logLikelihoods(reqs, model: nil)
        // The sum over continuation positions of the fake's per-token log-probs.
        for (req, r) in zip(reqs, ll) {
            let expected = req.continuation.enumerated().reduce(0.0) { $0 + Double(FakeEngine.logprob(token: $1.element, position: req.context.count + $1.offset, model: nil)) }
            XCTAssertEqual(r.logLikelihood, expected, accuracy: 1e-9)
        }
        var options = EvalOptions(); options.metrics = ["acc", "acc_norm"]
        let report = try EvalRunner.run(model: model, items: [item], source: "mc", options: EvalOptions())
        let lls = ll.map(\.logLikelihood)
        XCTAssertEqual(report.models[0].metrics["acc"], Metric.argmax(lls) == 1 ? 1 : 0)
        let norm = zip(lls, item.choices).map { $0 / Double($1.count) }
        XCTAssertEqual(report.models[0].metrics["acc_norm"], Metric.argmax(norm) == 1 ? 1 : 0)
        _ = options
    }

    func testEncodePairMovesTrailingSpaces() {
        let model = EngineEvalModel(engine: engine(), adapters: [])
        let r = model.encodePair(context: "Answer: ", continuation: "yes")
        XCTAssertEqual(model.engine.detokenize(r.context), "Answer:")
        XCTAssertEqual(model.engine.detokenize(r.continuation), " yes")
    }

    func testUnknownMetricAndMismatchedKindNameTheFix() {
        var options = EvalOptions(); options.metrics = ["rougeX"]
        let model = EngineEvalModel(engine: engine(), adapters: ["tuned"])
        XCTAssertThrowsError(try EvalRunner.run(model: model, items: items(), source: "t", options: options)) {
            XCTAssertTrue("\($0)".contains("known:"))
        }
        options.metrics = ["acc"]
        XCTAssertThrowsError(try EvalRunner.run(model: model, items: items(), source: "t", options: options)) {
            XCTAssertTrue("\($0)".contains("needs choices items"))
        }
    }
}

/// Lets a test name an adapter that is really the base (an adapter that was not applied).
final class AliasEngineModel: EvalModel {
    let inner: EngineEvalModel
    let aliases: [String: String?]
    init(_ inner: EngineEvalModel, aliases: [String: String?]) { self.inner = inner; self.aliases = aliases }
    var adapterNames: [String] { inner.adapterNames }
    func map(_ m: String?) -> String? { m.flatMap { aliases[$0] ?? $0 } }
    func chatText(_ messages: [JinjaValue], model: String?, addGenerationPrompt: Bool) throws -> String {
        try inner.chatText(messages, model: map(model), addGenerationPrompt: addGenerationPrompt)
    }
    func tokenize(_ text: String, addSpecialTokens: Bool) -> [Int32] { inner.tokenize(text, addSpecialTokens: addSpecialTokens) }
    func generate(_ prompts: [[Int32]], model: String?, maxTokens: Int, stop: [[String]]) throws -> [String] {
        try inner.generate(prompts, model: map(model), maxTokens: maxTokens, stop: stop)
    }
    func logLikelihoods(_ requests: [LikelihoodRequest], model: String?) throws -> [LikelihoodResult] {
        try inner.logLikelihoods(requests, model: map(model))
    }
}

/// An EvalModel whose log-likelihoods are a table: the text of a
/// continuation (one character a token) and the model name pick the value.
final class TableEvalModel: EvalModel {
    let adapterNames: [String]
    let table: [String: Double]   // "model|completion" → Σ log p
    init(adapters: [String], table: [String: Double]) { adapterNames = adapters; self.table = table }
    func chatText(_ messages: [JinjaValue], model: String?, addGenerationPrompt: Bool) throws -> String {
        messages.map { ($0["content"]?.stringValue ?? "") + "|" }.joined()
    }
    func tokenize(_ text: String, addSpecialTokens: Bool) -> [Int32] { text.unicodeScalars.map { Int32($0.value) } }
    func generate(_ prompts: [[Int32]], model: String?, maxTokens: Int, stop: [[String]]) throws -> [String] { prompts.map { _ in "" } }
    func logLikelihoods(_ requests: [LikelihoodRequest], model: String?) throws -> [LikelihoodResult] {
        requests.map { r in
            let text = String(String.UnicodeScalarView(r.continuation.compactMap { Unicode.Scalar(UInt32($0)) }))
            return LikelihoodResult(logLikelihood: table["\(model ?? "base")|\(text)"] ?? .nan, isGreedy: false)
        }
    }
}

final class PreferenceEvalTests: XCTestCase {
    /// Preference rows: the implicit reward β·(log π − log π_base) and the
    /// model's own preference (Σ log p of chosen against rejected), per item
    /// and in the mean, for the base and two adapters, from random log-likelihoods.
    func testRewardAndLogpMetricsFromTheLikelihoods() throws {
        let seed = UInt64.random(in: 0 ... 1 << 40)
        var rng = SeededRandom(seed: seed)
        let models = ["base", "sft", "dpo"]
        var table: [String: Double] = [:]
        var items: [EvalItem] = []
        for i in 0 ..< 24 {
            var item = EvalItem(id: i, kind: .preference, prompt: .chat([["role": "user", "content": .string("q\(i)")]]))
            item.chosen = "good \(i)"; item.rejected = "bad \(i)"
            items.append(item)
            for m in models { for c in [item.chosen!, item.rejected!] { table["\(m)|\(c)|"] = -Double.random(in: 1 ... 20, using: &rng) } }
        }
        var options = EvalOptions()
        options.beta = 0.1
        options.bootstrap = Bootstrap(resamples: 10)
        let report = try EvalRunner.run(model: TableEvalModel(adapters: ["sft", "dpo"], table: table), items: items, source: "pairs", options: options)
        XCTAssertEqual(report.metrics.map(\.name), ["logp_accuracy", "reward_accuracy", "reward_margin", "logp_margin"])
        for (k, m) in models.enumerated() {
            var logpAcc = 0.0, rewardAcc = 0.0, margin = 0.0, logpMargin = 0.0
            for item in items {
                let c = table["\(m)|\(item.chosen!)|"]!, r = table["\(m)|\(item.rejected!)|"]!
                let rc = 0.1 * (c - table["base|\(item.chosen!)|"]!), rr = 0.1 * (r - table["base|\(item.rejected!)|"]!)
                logpAcc += c > r ? 1 : 0
                rewardAcc += rc > rr ? 1 : 0
                margin += rc - rr
                logpMargin += c - r
            }
            let n = Double(items.count), got = report.models[k].metrics
            XCTAssertEqual(report.models[k].name, m)
            XCTAssertEqual(got["logp_accuracy"]!, logpAcc / n, accuracy: 1e-12, "seed \(seed) \(m)")
            XCTAssertEqual(got["reward_accuracy"]!, rewardAcc / n, accuracy: 1e-12, "seed \(seed) \(m)")
            XCTAssertEqual(got["reward_margin"]!, margin / n, accuracy: 1e-9, "seed \(seed) \(m)")
            XCTAssertEqual(got["logp_margin"]!, logpMargin / n, accuracy: 1e-9, "seed \(seed) \(m)")
        }
        XCTAssertEqual(report.models[0].metrics["reward_accuracy"], 0, "the base against itself: rewards 0, never chosen > rejected")
    }
}
