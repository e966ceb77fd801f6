import XCTest
@testable import LoftTensors

/// The pool of freed large CPU buffers: a buffer comes back for the same
/// size only, zeroed when a zeroed tensor asks for it, and the pool never
/// holds more than its cap.
final class CPUBufferPoolTests: XCTestCase {
    func testReusedBuffersAreZeroedAndCapped() {
        let pool = CPUBufferPool.shared
        let savedLimit = pool.limitBytes
        defer { pool.limitBytes = savedLimit }
        pool.limitBytes = 64 << 20
        pool.releaseAll()
        XCTAssertEqual(pool.cachedBytes, 0)

        let bytes = 3 << 20 + 4096 * 3  // over the huge-page size, not a multiple of it
        var first: UnsafeMutableRawPointer?
        do {
            let t = Tensor.zeros([bytes / 4])
            first = t.rawPointer
            t.floats.update(repeating: 42, count: t.count)
        }
        let sizeClass = CPUBufferPool.sizeClass(bytes)
        XCTAssertEqual(sizeClass, 3 << 20 + 256 << 10, "3 MiB + 12 KiB rounds up to the next eighth of 2 MiB")
        XCTAssertEqual(pool.cachedBytes, sizeClass, "a freed large tensor's buffer is kept")
        let again = Tensor.zeros([bytes / 4 + 1024])
        XCTAssertEqual(again.rawPointer, first, "a size of the same class takes it")
        XCTAssertEqual(pool.cachedBytes, 0)
        XCTAssertTrue(UnsafeBufferPointer(start: again.floats, count: again.count).allSatisfy { $0 == 0 },
                      "a zeroed tensor on a reused buffer reads zero")
        do { _ = Tensor.zeros([bytes / 4]) }  // freed into the pool
        XCTAssertEqual(pool.cachedBytes, sizeClass)
        let odd = Tensor.zeros([(5 << 20) / 4])
        XCTAssertNotEqual(odd.rawPointer, first, "another class does not take it")
        XCTAssertEqual(pool.cachedBytes, 0, "a miss unmaps cached buffers first, so the pool adds nothing to the peak")

        // The cap: ten 8 MiB buffers freed into a 20 MiB pool keep the newest two.
        pool.limitBytes = 20 << 20
        do { _ = (0 ..< 10).map { _ in Tensor.zeros([2 << 20]) } }
        XCTAssertEqual(pool.cachedBytes, 16 << 20)
        XCTAssertEqual(CPUBufferPool.sizeClass(8 << 20), 8 << 20, "a power of two is its own class")
        pool.limitBytes = 0
        XCTAssertEqual(pool.cachedBytes, 0, "lowering the cap unmaps what is over it")
        _ = (odd, again)
    }
}
