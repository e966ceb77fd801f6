import Foundation
import XCTest
@testable import LoftTemplates

/// Loading templates from the places models keep them.
final class TemplateSourceTests: XCTestCase {
    private func temporaryDirectory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("loft-templates-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir
    }

    func testTokenizerConfigWithStringTemplateAndAddedTokens() throws {
        let dir = try temporaryDirectory()
        let config = #"{"bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>", "chat_template": "{{ bos_token }}{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}"}"#
        try config.write(to: dir.appendingPathComponent("tokenizer_config.json"), atomically: true, encoding: .utf8)
        for source in [dir, dir.appendingPathComponent("tokenizer_config.json")] {
            let t = try ChatTemplate.load(from: source)
            XCTAssertEqual(try t.render(messages: [["role": "user", "content": "hi"]]), "<s>hi</s>")
        }
    }

    func testNamedTemplatesPickDefaultOrName() throws {
        let dir = try temporaryDirectory()
        let config = #"{"chat_template": [{"name": "default", "template": "D"}, {"name": "tool_use", "template": "T"}]}"#
        let url = dir.appendingPathComponent("tokenizer_config.json")
        try config.write(to: url, atomically: true, encoding: .utf8)
        XCTAssertEqual(try ChatTemplate.load(from: url).render(messages: []), "D")
        XCTAssertEqual(try ChatTemplate.load(from: url, name: "tool_use").render(messages: []), "T")
        XCTAssertEqual(try ChatTemplate.load(from: url, forTools: true).render(messages: []), "T")
        XCTAssertThrowsError(try ChatTemplate.load(from: url, name: "rag")) { error in
            XCTAssertTrue("\(error)".contains("default, tool_use"), "\(error)")
        }
    }

    func testChatTemplateJinjaInDirectoryWins() throws {
        let dir = try temporaryDirectory()
        try #"{"eos_token": "E", "chat_template": "old"}"#.write(to: dir.appendingPathComponent("tokenizer_config.json"), atomically: true, encoding: .utf8)
        try "new{{ eos_token }}".write(to: dir.appendingPathComponent("chat_template.jinja"), atomically: true, encoding: .utf8)
        XCTAssertEqual(try ChatTemplate.load(from: dir).render(messages: []), "newE")
    }

    func testMissingTemplateNamesFilesAndFix() throws {
        let dir = try temporaryDirectory()
        try #"{"eos_token": "</s>"}"#.write(to: dir.appendingPathComponent("tokenizer_config.json"), atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ChatTemplate.load(from: dir)) { error in
            guard case .missingTemplate(let files, let hint)? = error as? TemplateError else { return XCTFail("\(error)") }
            XCTAssertEqual(files.map { URL(fileURLWithPath: $0).lastPathComponent }, ["tokenizer_config.json"])
            XCTAssertTrue(hint.contains("chat_template"))
        }
    }

    func testGGUFSourceSaysItIsNotWiredYet() throws {
        let dir = try temporaryDirectory()
        let url = dir.appendingPathComponent("model.gguf")
        try Data([0x47, 0x47, 0x55, 0x46]).write(to: url)
        XCTAssertThrowsError(try ChatTemplate.load(from: url)) { error in
            XCTAssertTrue("\(error)".contains("GGUF"), "\(error)")
        }
    }

    func testSyntaxErrorFromFileNamesTheFile() throws {
        let dir = try temporaryDirectory()
        let url = dir.appendingPathComponent("bad.jinja")
        try "ok\n{% if %}".write(to: url, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ChatTemplate.load(from: url)) { error in
            XCTAssertTrue("\(error)".contains("bad.jinja") && "\(error)".contains("line 2"), "\(error)")
        }
    }
}
