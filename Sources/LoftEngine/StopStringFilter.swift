/// The text one choice has produced, released as far as no stop string can
/// still begin in it: generation ends at the first stop string, the text
/// returned ends before it, and no released piece ever holds the start of a
/// stop string that later completes (OpenAI's semantics for `stop`). Works on
/// UTF-8 bytes; the pieces it gets are whole characters (the streaming
/// detokenizer holds back incomplete ones), so every cut is on a character
/// boundary.
struct StopStringFilter {
    let stops: [[UInt8]]
    private(set) var text: [UInt8] = []
    private(set) var released = 0
    private(set) var stopped = false

    init(_ stops: [String]) { self.stops = stops.map { Array($0.utf8) }.filter { !$0.isEmpty } }

    private var longestStop: Int { stops.map(\.count).max() ?? 0 }

    /// Adds decoded text; returns what may be released now.
    mutating func add(_ piece: String) -> String {
        guard !stopped else { return "" }
        text += piece.utf8
        // A stop string can only start where released text could not see it end.
        let from = max(0, released - longestStop + 1)
        if let cut = firstStop(from: from) {
            stopped = true
            text.removeSubrange(cut...)
            return release(upTo: text.count)
        }
        var hold = 0
        for stop in stops {
            // the longest proper prefix of `stop` that ends the text
            var k = min(stop.count - 1, text.count - released)
            while k > hold {
                if text[(text.count - k)...].elementsEqual(stop[..<k]) { hold = k; break }
                k -= 1
            }
        }
        return release(upTo: text.count - hold)
    }

    /// Releases everything held (the output ended without a stop string).
    mutating func flush() -> String { release(upTo: text.count) }

    private mutating func release(upTo end: Int) -> String {
        guard end > released else { return "" }
        let out = String(decoding: text[released ..< end], as: UTF8.self)
        released = end
        return out
    }

    private func firstStop(from: Int) -> Int? {
        var best: Int?
        for stop in stops where stop.count <= text.count {
            var i = from
            while i + stop.count <= text.count {
                if text[i] == stop[0] && text[i ..< i + stop.count].elementsEqual(stop) {
                    if best == nil || i < best! { best = i }
                    break
                }
                i += 1
            }
        }
        return best
    }

    var fullText: String { String(decoding: text, as: UTF8.self) }
}
