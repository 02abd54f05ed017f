// Einsum (opset 12): any number of operands, explicit (`ij,jk->ik`) or implicit (`ij,jk`)
// output, `...` for broadcast dimensions, repeated letters within an operand (diagonals).
// One loop over every combination of the equation's letters, products and sums in Double in
// that fixed order; the backward step walks the same combinations. Exporters emit it for small
// contractions (outer products of positions and frequencies in rotary embeddings, for one).

extension OpContext {
    func einsum() throws -> Value {
        let equation = try string("equation", "").filter { $0 != " " }
        guard !inputs.isEmpty else { throw fail("needs at least one input") }
        let operands = try (0..<inputs.count).map { try float($0) }
        let parts = equation.components(separatedBy: "->")
        guard parts.count <= 2 else { throw fail("equation '\(equation)' has more than one '->'") }
        let lhs = parts[0].components(separatedBy: ",")
        guard lhs.count == operands.count else {
            throw fail("equation '\(equation)' names \(lhs.count) operands, the node has \(operands.count) inputs")
        }
        // Letters of each operand; "..." becomes as many fresh labels as it covers.
        let ellipsisLabels = (0..<32).map { Character(UnicodeScalar(0x100 + $0)!) }
        var ellipsisRank = 0
        var subscripts: [[Character]] = []
        for (k, term) in lhs.enumerated() {
            let rank = operands[k].value.shape.count
            let letters = Array(term.replacingOccurrences(of: "...", with: ""))
            guard letters.allSatisfy({ $0.isLetter }) else { throw fail("equation '\(equation)': operand \(k) has '\(term)'") }
            if term.contains("...") {
                let covered = rank - letters.count
                guard covered >= 0 else { throw fail("operand \(k) of rank \(rank) does not fit '\(term)'") }
                ellipsisRank = max(ellipsisRank, covered)
                let pieces = term.components(separatedBy: "...")
                subscripts.append(Array(pieces[0]) + Array(ellipsisLabels[(32 - covered)...]) + Array(pieces[1]))
            } else {
                guard letters.count == rank else { throw fail("operand \(k) has rank \(rank), '\(term)' names \(letters.count) dimensions") }
                subscripts.append(letters)
            }
        }
        let broadcast = Array(ellipsisLabels[(32 - ellipsisRank)...])
        var output: [Character]
        if parts.count == 2 {
            let explicit = parts[1]
            let pieces = explicit.components(separatedBy: "...")
            output = pieces.count == 2 ? Array(pieces[0]) + broadcast + Array(pieces[1]) : Array(explicit)
            guard output.allSatisfy({ $0.isLetter || broadcast.contains($0) }) else { throw fail("equation '\(equation)': output '\(explicit)'") }
        } else {
            // Implicit: the broadcast dimensions, then the letters used once, in alphabetical order.
            var counts: [Character: Int] = [:]
            for s in subscripts { for c in s where !broadcast.contains(c) { counts[c, default: 0] += 1 } }
            output = broadcast + counts.filter { $0.value == 1 }.keys.sorted()
        }
        // The size of every label; an ellipsis dimension of size 1 broadcasts.
        var size: [Character: Int] = [:]
        for (k, s) in subscripts.enumerated() {
            for (d, c) in s.enumerated() {
                let n = operands[k].value.shape[d]
                if let known = size[c], known != n {
                    if broadcast.contains(c) && (known == 1 || n == 1) { size[c] = max(known, n); continue }
                    throw fail("dimension '\(c)' is \(known) in one place and \(n) in another")
                }
                size[c] = n
            }
        }
        for c in output where size[c] == nil { throw fail("output label '\(c)' is not an input's") }
        let labels = output + size.keys.filter { !output.contains($0) }.sorted()
        let extent = labels.map { size[$0]! }
        let outShape = output.map { size[$0]! }
        let outStrides = stridesOf(outShape)
        // For each operand, the stride of every label in it (0 where it broadcasts or is absent).
        let operandStrides: [[Int]] = subscripts.enumerated().map { k, s in
            let shape = operands[k].value.shape, st = stridesOf(shape)
            return labels.map { c in
                var total = 0
                for (d, l) in s.enumerated() where l == c && shape[d] != 1 { total += st[d] }
                return total
            }
        }
        let outLabelStrides = labels.map { c in output.firstIndex(of: c).map { outStrides[$0] } ?? 0 }
        let combinations = extent.reduce(1, *)
        let values = operands.map(\.value.scalars)
        /// Calls `body(outIndex, operandIndices)` for every combination of label values.
        func walk(_ body: (Int, [Int]) -> Void) {
            var counter = [Int](repeating: 0, count: labels.count)
            var offsets = [Int](repeating: 0, count: operands.count)
            var outOffset = 0
            for _ in 0..<combinations {
                body(outOffset, offsets)
                var d = labels.count - 1
                while d >= 0 {
                    counter[d] += 1
                    outOffset += outLabelStrides[d]
                    for k in offsets.indices { offsets[k] += operandStrides[k][d] }
                    if counter[d] < extent[d] { break }
                    outOffset -= outLabelStrides[d] * extent[d]
                    for k in offsets.indices { offsets[k] -= operandStrides[k][d] * extent[d] }
                    counter[d] = 0
                    d -= 1
                }
            }
        }
        var acc = [Double](repeating: 0, count: outShape.reduce(1, *))
        walk { o, idx in
            var p = 1.0
            for k in idx.indices { p *= Double(values[k][idx[k]]) }
            acc[o] += p
        }
        let y = Tensor(shape: outShape, scalars: acc.map { Float($0) })
        return emit(y, parents: operands) { dy in
            let g = dy.scalars
            var grads = operands.map { [Double](repeating: 0, count: $0.value.count) }
            walk { o, idx in
                for k in idx.indices where operands[k].requiresGrad {
                    var p = Double(g[o])
                    for j in idx.indices where j != k { p *= Double(values[j][idx[j]]) }
                    grads[k][idx[k]] += p
                }
            }
            for (k, v) in operands.enumerated() where v.requiresGrad {
                v.accumulateGrad { d in for i in 0..<grads[k].count { d[i] += Float(grads[k][i]) } }
            }
        }
    }
}
