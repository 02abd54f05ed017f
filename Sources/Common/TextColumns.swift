/// Rows of text as aligned columns: each cell padded to its column's widest, two spaces between
/// columns, trailing spaces trimmed. The one table layout of every command (`check`'s verdicts,
/// `history`, `inspect`, the bench).
public enum TextColumns {
    /// `rightAligned` columns are padded on the left (numbers). `decorate` sees each padded cell
    /// (row, column, text) and may wrap it, e.g. in ANSI colours, after the widths are measured.
    public static func render(_ rows: [[String]], rightAligned: Set<Int> = [], indent: String = "",
                              decorate: ((Int, Int, String) -> String)? = nil) -> [String] {
        let columns = rows.map(\.count).max() ?? 0
        let widths = (0..<columns).map { c in rows.map { c < $0.count ? $0[c].count : 0 }.max() ?? 0 }
        return rows.enumerated().map { r, row in
            var line = indent + row.enumerated().map { c, cell in
                let fill = String(repeating: " ", count: widths[c] - cell.count)
                let padded = rightAligned.contains(c) ? fill + cell : cell + fill
                return decorate?(r, c, padded) ?? padded
            }.joined(separator: "  ")
            while line.last == " " { line.removeLast() }
            return line
        }
    }
}
