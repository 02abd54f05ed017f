import Kernels

// Differentiable ops. Each op computes its forward value and, when a tape is given and some
// input requires a gradient, records a backward step that *adds* into the inputs' gradients.

/// Fully connected layer, PyTorch layout: y = x · Wᵀ + b.
/// Shapes: x `(B, in)`, weight `(out, in)`, bias `(out)`, y `(B, out)`.
public func linear(_ x: Variable, weight: Variable, bias: Variable?, tape: Tape?, threads: Int) -> Variable {
    let w = weight.value
    precondition(x.value.shape.count == 2 && w.shape.count == 2 && x.value.shape[1] == w.shape[1],
                 "linear: input \(x.value.shape) does not fit weight \(w.shape)")
    let batch = x.value.shape[0], inF = w.shape[1], outF = w.shape[0]
    var y = Tensor(zeros: [batch, outF])
    linearForward(x.value, w, bias?.value, into: &y, threads: threads)
    let out = Variable(y, requiresGrad: x.requiresGrad || weight.requiresGrad || (bias?.requiresGrad ?? false))
    if let tape, out.requiresGrad {
        tape.record {
            guard let dy = out.grad else { return }
            linearBackward(x: x, weight: weight, bias: bias, dy: dy, batch: batch, inF: inF, outF: outF,
                           threads: threads)
        }
    }
    return out
}

/// y = x · Wᵀ + b, with y `(B, out)` preallocated.
public func linearForward(_ x: Tensor, _ w: Tensor, _ b: Tensor?, into y: inout Tensor, threads: Int) {
    let batch = x.shape[0], inF = w.shape[1], outF = w.shape[0]
    x.withUnsafeBufferPointer { xp in
        w.withUnsafeBufferPointer { wp in
            y.withUnsafeMutableBufferPointer { yp in
                gemm(m: batch, n: outF, k: inF, a: xp.baseAddress!, lda: inF, transposeA: false,
                     b: wp.baseAddress!, ldb: inF, transposeB: true,
                     c: yp.baseAddress!, ldc: outF, accumulate: false, threads: threads)
                if let b {
                    b.withUnsafeBufferPointer { addRowVector($0.baseAddress!, rows: batch, cols: outF, out: yp.baseAddress!) }
                }
            }
        }
    }
}

/// dx += dy · W, dW += dyᵀ · x, db += Σ_batch dy.
func linearBackward(
    x: Variable, weight: Variable, bias: Variable?, dy: Tensor, batch: Int, inF: Int, outF: Int, threads: Int
) {
    dy.withUnsafeBufferPointer { dyp in
        let d = dyp.baseAddress!
        if x.requiresGrad {
            weight.value.withUnsafeBufferPointer { wp in
                x.accumulateGrad { dx in
                    gemm(m: batch, n: inF, k: outF, a: d, lda: outF, transposeA: false,
                         b: wp.baseAddress!, ldb: inF, transposeB: false,
                         c: dx, ldc: inF, accumulate: true, threads: threads)
                }
            }
        }
        if weight.requiresGrad {
            x.value.withUnsafeBufferPointer { xp in
                weight.accumulateGrad { dw in
                    gemm(m: outF, n: inF, k: batch, a: d, lda: outF, transposeA: true,
                         b: xp.baseAddress!, ldb: inF, transposeB: false,
                         c: dw, ldc: inF, accumulate: true, threads: threads)
                }
            }
        }
        if let bias, bias.requiresGrad {
            bias.accumulateGrad { db in sumRows(d, rows: batch, cols: outF, into: db) }
        }
    }
}

/// y = max(x, 0), any shape.
public func relu(_ x: Variable, tape: Tape?) -> Variable {
    let y = x.value.withUnsafeBufferPointer { xp in
        Tensor(shape: x.value.shape) { reluForward(xp.baseAddress!, count: xp.count, out: $0.baseAddress!) }
    }
    let out = Variable(y, requiresGrad: x.requiresGrad)
    if let tape, out.requiresGrad {
        tape.record {
            guard let dy = out.grad else { return }
            x.value.withUnsafeBufferPointer { xp in
                dy.withUnsafeBufferPointer { dp in
                    x.accumulateGrad { reluBackward(xp.baseAddress!, dp.baseAddress!, count: xp.count, dx: $0) }
                }
            }
        }
    }
    return out
}

/// The same elements under `shape` (a view in value terms); the gradient is reshaped back.
public func reshape(_ x: Variable, to shape: [Int], tape: Tape?) -> Variable {
    let out = Variable(x.value.reshaped(shape), requiresGrad: x.requiresGrad)
    if let tape, out.requiresGrad {
        tape.record {
            guard let dy = out.grad else { return }
            dy.withUnsafeBufferPointer { dp in
                x.accumulateGrad { dx in for i in 0..<dp.count { dx[i] += dp[i] } }
            }
        }
    }
    return out
}

/// Mean softmax cross-entropy of logits `(B, C)` against class indices `labels` `(B)`, with
/// optional label smoothing ε (the target is (1 − ε)·onehot + ε/C, as PyTorch's
/// `CrossEntropyLoss(label_smoothing=ε)`). Returns a scalar; the backward step adds
/// (softmax − target) / B · ∂loss into the logits.
public func softmaxCrossEntropy(_ logits: Variable, labels: [Int32], labelSmoothing: Float = 0, tape: Tape?) -> Variable {
    var probs = Tensor(zeros: logits.value.shape)
    let loss = crossEntropyForward(logits.value, labels: labels, labelSmoothing: labelSmoothing, probs: &probs)
    let out = Variable(Tensor(shape: [1], scalars: [loss]), requiresGrad: logits.requiresGrad)
    if let tape, out.requiresGrad {
        tape.record {
            guard let g = out.grad?.scalars[0] else { return }
            crossEntropyBackward(g, probs: probs, labels: labels, labelSmoothing: labelSmoothing, into: logits)
        }
    }
    return out
}

/// `softmaxCrossEntropy` for a training loop: the same values and gradients, with one
/// probability buffer, one loss Variable (while nothing else holds the last one) and one
/// backward closure for every call, so a step allocates none of them. Its backward step reads
/// the buffers of the last call: one call per backward pass.
public final class CrossEntropyLoss {
    public let labelSmoothing: Float
    private var logits: Variable?
    private var labels: [Int32] = []
    private var probs = Tensor(zeros: [0])
    private var output: Variable?
    private var back: (() -> Void)?

    public init(labelSmoothing: Float = 0) { self.labelSmoothing = labelSmoothing }

    /// The mean loss of `logits` against `labels`; its backward step goes on `tape`.
    public func callAsFunction(_ logits: Variable, labels: [Int32], tape: Tape) -> Variable {
        if probs.shape != logits.value.shape { probs = Tensor(zeros: logits.value.shape) }
        let loss = crossEntropyForward(logits.value, labels: labels, labelSmoothing: labelSmoothing, probs: &probs)
        let out: Variable
        if isKnownUniquelyReferenced(&output), let kept = output, kept.requiresGrad == logits.requiresGrad {
            kept.value.withUnsafeMutableBufferPointer { $0[0] = loss }
            kept.zeroGrad()
            out = kept
        } else {
            out = Variable(Tensor(shape: [1], scalars: [loss]), requiresGrad: logits.requiresGrad)
            output = out
        }
        self.logits = logits
        self.labels.removeAll(keepingCapacity: true)
        self.labels.append(contentsOf: labels)
        if out.requiresGrad {
            if back == nil {
                back = { [weak self] in
                    guard let self, let logits = self.logits else { return }
                    // Let the logits go: a graph keeping its steps reuses its output only when
                    // nothing else holds it.
                    self.logits = nil
                    guard let g = self.output?.grad?.scalars[0] else { return }
                    crossEntropyBackward(g, probs: self.probs, labels: self.labels, labelSmoothing: self.labelSmoothing, into: logits)
                }
            }
            tape.record(back!)
        }
        return out
    }
}

/// Softmax of `logits` (…, C) into `probs` and the mean cross-entropy against `labels`, one
/// per row of C (a classifier's example, a language model's position). Rows labelled
/// `LabeledData.ignoredLabel` (-100) count for nothing; the mean is over the others.
private func crossEntropyForward(_ logits: Tensor, labels: [Int32], labelSmoothing: Float, probs: inout Tensor) -> Float {
    let shape = logits.shape
    let classes = shape.last ?? 0
    let batch = logits.count / max(classes, 1)
    precondition(shape.count >= 2 && batch == labels.count,
                 "cross-entropy: logits \(shape) do not fit \(labels.count) labels")
    var loss: Double = 0
    var counted = 0
    let off = Double(labelSmoothing) / Double(classes), on = 1 - Double(labelSmoothing) + off
    logits.withUnsafeBufferPointer { lp in
        probs.withUnsafeMutableBufferPointer { pp in
            softmaxRows(lp.baseAddress!, rows: batch, cols: classes, out: pp.baseAddress!)
            for r in 0..<batch {
                if labels[r] == LabeledData.ignoredLabel { continue }
                counted += 1
                let label = Int(labels[r])
                precondition(label >= 0 && label < classes, "label \(label) outside 0..<\(classes)")
                if labelSmoothing == 0 {
                    loss -= Double(max(pp[r * classes + label], Float.leastNormalMagnitude)).logNatural
                } else {
                    for j in 0..<classes {
                        let t = j == label ? on : off
                        loss -= t * Double(max(pp[r * classes + j], Float.leastNormalMagnitude)).logNatural
                    }
                }
            }
        }
    }
    return Float(loss / Double(max(counted, 1)))
}

/// ∂loss/∂logits += (softmax − target) / n · g over the n rows not ignored.
private func crossEntropyBackward(_ g: Float, probs: Tensor, labels: [Int32], labelSmoothing: Float, into logits: Variable) {
    let classes = probs.shape.last ?? 0, batch = probs.count / max(classes, 1)
    let off = Double(labelSmoothing) / Double(classes), on = 1 - Double(labelSmoothing) + off
    let onF = Float(on), offF = Float(off)
    let counted = labels.reduce(0) { $0 + ($1 == LabeledData.ignoredLabel ? 0 : 1) }
    let scale = g / Float(max(counted, 1))
    probs.withUnsafeBufferPointer { pp in
        logits.accumulateGrad { dl in
            for r in 0..<batch where labels[r] != LabeledData.ignoredLabel {
                for j in 0..<classes {
                    let target: Float = j == Int(labels[r]) ? onF : offF
                    dl[r * classes + j] += (pp[r * classes + j] - target) * scale
                }
            }
        }
    }
}

/// Knowledge-distillation loss: KL(softmax(teacher/T) ‖ softmax(student/T)) · T², averaged over
/// the batch (Hinton et al. 2015; PyTorch's `kl_div(log_softmax(s/T), softmax(t/T),
/// reduction="batchmean") · T²`). The teacher's logits are constants.
public func distillationKL(student: Variable, teacher: Tensor, temperature: Float, tape: Tape?) -> Variable {
    let shape = student.value.shape
    precondition(shape.count >= 2 && teacher.shape == shape, "distillation: student \(shape) vs teacher \(teacher.shape)")
    // Every row of the last axis is one distribution (an example, or a token position).
    let classes = shape[shape.count - 1], batch = student.value.count / max(classes, 1)
    let invT = 1 / temperature
    var ps = [Float](repeating: 0, count: batch * classes), pt = ps
    let scaledS = student.value.scalars.map { $0 * invT }, scaledT = teacher.scalars.map { $0 * invT }
    scaledS.withUnsafeBufferPointer { softmaxRows($0.baseAddress!, rows: batch, cols: classes, out: &ps) }
    scaledT.withUnsafeBufferPointer { softmaxRows($0.baseAddress!, rows: batch, cols: classes, out: &pt) }
    var kl = 0.0
    for i in 0..<(batch * classes) where pt[i] > 0 {
        kl += Double(pt[i]) * (Double(pt[i]).logNatural - Double(max(ps[i], Float.leastNormalMagnitude)).logNatural)
    }
    let t2 = Double(temperature * temperature)
    let out = Variable(Tensor(shape: [1], scalars: [Float(kl * t2 / Double(max(batch, 1)))]), requiresGrad: student.requiresGrad)
    if let tape, out.requiresGrad {
        tape.record {
            guard let g = out.grad?.scalars[0] else { return }
            // ∂/∂s = T²/B · (ps − pt) / T = T·(ps − pt)/B.
            let scale = g * temperature / Float(batch)
            student.accumulateGrad { d in for i in 0..<(batch * classes) { d[i] += (ps[i] - pt[i]) * scale } }
        }
    }
    return out
}

/// a·x + b·y for scalar losses (mixing distillation and label losses).
public func weightedSum(_ x: Variable, _ a: Float, _ y: Variable, _ b: Float, tape: Tape?) -> Variable {
    let out = Variable(Tensor(shape: [1], scalars: [a * x.value.scalars[0] + b * y.value.scalars[0]]),
                       requiresGrad: x.requiresGrad || y.requiresGrad)
    if let tape, out.requiresGrad {
        tape.record {
            guard let g = out.grad?.scalars[0] else { return }
            if x.requiresGrad { x.accumulateGrad { $0[0] += a * g } }
            if y.requiresGrad { y.accumulateGrad { $0[0] += b * g } }
        }
    }
    return out
}

/// Mean squared error of predictions `(B, K)` against targets `(B, K)`, averaged over all
/// B·K elements (PyTorch's `MSELoss(reduction="mean")`). Backward adds 2(ŷ − y)/(B·K) · ∂loss.
public func meanSquaredError(_ predictions: Variable, targets: Tensor, tape: Tape?) -> Variable {
    precondition(predictions.value.shape == targets.shape, "MSE: predictions \(predictions.value.shape) vs targets \(targets.shape)")
    let n = predictions.value.count
    var sum: Double = 0
    predictions.value.withUnsafeBufferPointer { p in
        targets.withUnsafeBufferPointer { t in
            for i in 0..<n { let d = Double(p[i] - t[i]); sum += d * d }
        }
    }
    let out = Variable(Tensor(shape: [1], scalars: [Float(sum / Double(max(n, 1)))]), requiresGrad: predictions.requiresGrad)
    if let tape, out.requiresGrad {
        tape.record {
            guard let g = out.grad?.scalars[0] else { return }
            let scale = 2 * g / Float(n)
            predictions.value.withUnsafeBufferPointer { p in
                targets.withUnsafeBufferPointer { t in
                    predictions.accumulateGrad { d in for i in 0..<n { d[i] += (p[i] - t[i]) * scale } }
                }
            }
        }
    }
    return out
}

public extension Double {
    /// Natural logarithm via the binary exponent and an atanh series: platform-independent,
    /// used for reported loss values only.
    var logNatural: Double {
        guard self > 0, isFinite else { return self == 0 ? -.infinity : .nan }
        let e = Double(exponent)
        let m = significand / 2.0.squareRoot()   // in [1/√2, √2)
        let t = (m - 1) / (m + 1), t2 = t * t
        var term = t, sum = 0.0
        var k = 1.0
        while abs(term) > 1e-18 {
            sum += term / k
            term *= t2
            k += 2
        }
        return 2 * sum + (e + 0.5) * 0.6931471805599453
    }
}
