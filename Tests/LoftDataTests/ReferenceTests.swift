import Foundation
import LoftTemplates
import LoftTokenizers
import XCTest
@testable import LoftData

/// Shared, loaded once: the SmolLM2 tokenizer.
enum Shared {
    static let tokenizer: Tokenizer = {
        do { return try Tokenizer.load(source: TestPaths.smolLM2) }
        catch { fatalError("cannot load \(TestPaths.smolLM2): \(error); run tools/fetch-model.sh") }
    }()
    static func dataset(_ name: String) -> String { TestPaths.shared.appendingPathComponent("datasets/" + name).path }
}

/// Ids and labels against tools/make_data_fixtures.py (transformers' apply_chat_template
/// + tokenizer, labels from str.find of each ChatML block: an independent method).
final class ReferenceTests: XCTestCase {
    struct Case: Decodable {
        let file: String
        let row: Int
        let options: [String: OptionValue]
        let text: String
        let ids: [Int32]
        let labels: [Int32]
    }
    enum OptionValue: Decodable, Equatable {
        case string(String), bool(Bool), list([String])
        init(from d: Decoder) throws {
            let c = try d.singleValueContainer()
            if let b = try? c.decode(Bool.self) { self = .bool(b) }
            else if let s = try? c.decode(String.self) { self = .string(s) }
            else { self = .list(try c.decode([String].self)) }
        }
    }
    struct Fixture: Decodable {
        struct Meta: Decodable { let variables: [String: String] }
        let meta: Meta
        let cases: [Case]
    }

    func testIdsAndLabelsMatchTransformers() throws {
        let data = try Data(contentsOf: TestPaths.fixtures.appendingPathComponent("data_expected.json"))
        let fixture = try JSONDecoder().decode(Fixture.self, from: data)
        XCTAssertGreaterThanOrEqual(fixture.cases.count, 20)
        // Group cases by (file, options) so each dataset is built once per option set.
        var groups: [String: [Case]] = [:]
        for c in fixture.cases {
            let key = c.file + "|" + c.options.keys.sorted().map { "\($0)=\(String(describing: c.options[$0]!))" }.joined(separator: ",")
            groups[key, default: []].append(c)
        }
        var checked = 0
        for (_, cases) in groups.sorted(by: { $0.key < $1.key }) {
            let first = cases[0]
            var o = DataOptions(sequenceLen: 1_000_000)
            o.maxRows = (cases.map(\.row).max() ?? 0) + 1
            for (k, v) in first.options {
                switch (k, v) {
                case ("train_on_eos", .string(let s)): o.trainOnEOS = TrainOnEOS(rawValue: s)!
                case ("train_on_inputs", .bool(let b)): o.trainOnInputs = b
                case ("roles_to_train", .list(let l)): o.rolesToTrain = l
                default: XCTFail("unknown option \(k)")
                }
            }
            let builder = try DatasetBuilder(tokenizer: Shared.tokenizer, options: o)
            let spec = DatasetSpec(path: Shared.dataset(first.file), variables: fixture.meta.variables)
            let built = try builder.build([spec])
            for c in cases {
                // JSON rows and JSONL lines are both 1-based here.
                guard let k = built.trainOrigins.firstIndex(where: { $0.row == c.row + 1 }) else {
                    XCTFail("\(c.file) row \(c.row): no example"); continue
                }
                let ex = built.train[k]
                XCTAssertEqual(ex.ids, c.ids, "\(c.file) row \(c.row) \(c.options): ids differ")
                XCTAssertEqual(ex.labels, c.labels, "\(c.file) row \(c.row) \(c.options): labels differ")
                if ex.labels != c.labels {
                    for (i, (a, b)) in zip(ex.labels, c.labels).enumerated() where a != b {
                        print("  token \(i) id \(ex.ids[i]) \(Shared.tokenizer.decode([Int(ex.ids[i])]).debugDescription): got \(a), expected \(b)")
                        break
                    }
                }
                XCTAssertTrue(c.labels.contains { $0 >= 0 }, "a fixture with nothing trained tests nothing")
                checked += 1
            }
        }
        XCTAssertEqual(checked, fixture.cases.count)
    }
}
