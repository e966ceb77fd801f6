import XCTest
@testable import LoftTemplates

final class TemplatesSmokeTests: XCTestCase {
    func testModuleLoads() { XCTAssertTrue(true) }
}
