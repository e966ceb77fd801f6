import Foundation
import XCTest
@testable import LoftEval
import LoftTestSupport

/// Every text metric against rouge-score, sacrebleu and the SQuAD v1.1
/// script on 200 generated pairs (tools/make_eval_fixtures.py).
final class MetricParityTests: XCTestCase {
    struct Fixture: Decodable {
        struct Item: Decodable {
            var prediction: String
            var references: [String]
            var rouge1: Double, rouge2: Double, rougeL: Double, rougeLsum: Double
            var exact_match: Double, squad_em: Double, squad_f1: Double
            var sentence_bleu: Double, sentence_chrf: Double
        }
        var items: [Item]
        var corpus_bleu: Double
        var corpus_chrf: Double
        var corpus_bleu_first_100: Double
    }

    func load() throws -> Fixture {
        let url = SharedTestPaths.fixtures(of: "LoftEvalTests").appendingPathComponent("text_metrics.json")
        return try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
    }

    func outcome(_ item: Fixture.Item) -> ItemOutcome {
        var o = ItemOutcome(); o.prediction = item.prediction; o.references = item.references; return o
    }

    func testEveryPerItemMetricMatchesItsPackage() throws {
        let fixture = try load()
        XCTAssertEqual(fixture.items.count, 200)
        let names: [(String, KeyPath<Fixture.Item, Double>)] = [
            ("rouge1", \.rouge1), ("rouge2", \.rouge2), ("rougeL", \.rougeL), ("rougeLsum", \.rougeLsum),
            ("exact_match", \.exact_match), ("squad_em", \.squad_em), ("squad_f1", \.squad_f1),
        ]
        for (name, key) in names {
            let metric = Metric.all[name]!
            var worst = 0.0
            for (i, item) in fixture.items.enumerated() {
                let got = metric.statistics(outcome(item))[0]
                let diff = abs(got - item[keyPath: key])
                worst = max(worst, diff)
                XCTAssertEqual(got, item[keyPath: key], accuracy: 1e-9, "\(name) item \(i): \(item.prediction.debugDescription) vs \(item.references)")
            }
            // The per-item values are not all equal or all zero: the fixture exercises the metric.
            let values = fixture.items.map { $0[keyPath: key] }
            XCTAssertGreaterThanOrEqual(Set(values).count, 2, name)
            XCTAssertLessThan(values.filter { $0 == 0 }.count, 190, name)
        }
    }

    func testSentenceBLEUAndChrF() throws {
        for (i, item) in try load().items.enumerated() {
            let bleu = SacreBLEU.bleu(statistics: SacreBLEU.bleuStatistics(hypothesis: item.prediction, references: item.references), effectiveOrder: true)
            XCTAssertEqual(bleu, item.sentence_bleu, accuracy: 1e-9, "sentence BLEU item \(i)")
            let chrf = SacreBLEU.chrf(statistics: SacreBLEU.chrfStatistics(hypothesis: item.prediction, references: item.references))
            XCTAssertEqual(chrf, item.sentence_chrf, accuracy: 1e-9, "sentence chrF item \(i)")
        }
    }

    func testCorpusBLEUAndChrFFromSummedStatistics() throws {
        let fixture = try load()
        let outcomes = fixture.items.map(outcome)
        let bleu = Metric.all["bleu"]!, chrf = Metric.all["chrf"]!
        let bleuStats = outcomes.map { bleu.statistics($0) }
        XCTAssertEqual(bleu.aggregate(bleuStats), fixture.corpus_bleu, accuracy: 1e-9)
        XCTAssertEqual(bleu.aggregate(bleuStats, indices: Array(0 ..< 100)), fixture.corpus_bleu_first_100, accuracy: 1e-9)
        XCTAssertEqual(chrf.aggregate(outcomes.map { chrf.statistics($0) }), fixture.corpus_chrf, accuracy: 1e-9)
    }

    func testTokenizersOnKnownStrings() {
        XCTAssertEqual(Rouge.tokenize("The cat's 3.14 naïve-İstanbul"), ["the", "cat", "s", "3", "14", "na", "ve", "i", "stanbul"])
        XCTAssertEqual(SacreBLEU.tokenize13a("Hello, world. It costs $5.00 (really)!"), "Hello , world . It costs $ 5.00 ( really ) !")
        XCTAssertEqual(Squad.normalize("The  Answer, is: an apple!"), "answer is apple")
    }

    func testContainsWithReferenceAndPattern() throws {
        XCTAssertTrue(TextMatch.contains("I am Loft Assistant.", references: ["Loft Assistant"], pattern: nil))
        XCTAssertFalse(TextMatch.contains("I am loft assistant.", references: ["Loft Assistant"], pattern: nil))
        let p = try NSRegularExpression(pattern: "(?i)loft")
        XCTAssertTrue(TextMatch.contains("i am loft", references: ["x"], pattern: p))
        XCTAssertFalse(TextMatch.contains("I am SmolLM", references: ["Loft"], pattern: p))
    }
}
