/// Which blocks of the KV arena are in use. The arena is cut into blocks of
/// `blockSize` tokens; a sequence gets a contiguous run of blocks covering its
/// whole budget (prompt + max tokens) when it is admitted, and gives them back
/// when it finishes or is cancelled. Contiguous runs let attention read a
/// sequence's keys as one view (no gather per step); the price is that a
/// request may wait for a long enough free run while scattered blocks are
/// free (first fit keeps that rare; when nothing runs the whole arena is free,
/// so every admissible request is eventually admitted).
struct KVBlockPool {
    let blockSize: Int
    let blockCount: Int
    private var used: [Bool]
    private(set) var usedBlocks = 0

    init(tokens: Int, blockSize: Int) {
        precondition(blockSize > 0 && tokens >= blockSize, "KV pool: \(tokens) tokens in blocks of \(blockSize)")
        self.blockSize = blockSize
        blockCount = tokens / blockSize
        used = Array(repeating: false, count: blockCount)
    }

    struct Span: Equatable {
        var firstBlock: Int
        var blocks: Int
    }

    func blocks(forTokens n: Int) -> Int { (n + blockSize - 1) / blockSize }

    /// First fit: the lowest run of free blocks that holds `tokens`.
    mutating func allocate(tokens: Int) -> Span? {
        let need = blocks(forTokens: max(tokens, 1))
        guard need <= blockCount - usedBlocks else { return nil }
        var runStart = 0, runLength = 0
        for i in 0 ..< blockCount {
            if used[i] { runLength = 0; runStart = i + 1; continue }
            runLength += 1
            if runLength == need {
                for j in runStart ..< runStart + need { used[j] = true }
                usedBlocks += need
                return Span(firstBlock: runStart, blocks: need)
            }
        }
        return nil
    }

    mutating func free(_ span: Span) {
        for j in span.firstBlock ..< span.firstBlock + span.blocks {
            precondition(used[j], "KV pool: block \(j) freed twice")
            used[j] = false
        }
        usedBlocks -= span.blocks
    }

    func startToken(_ span: Span) -> Int { span.firstBlock * blockSize }
    func capacity(_ span: Span) -> Int { span.blocks * blockSize }
}
