import Common
import TensorEngine

/// What a cut works with besides the recipe.
public struct PruningContext {
    /// Examples for data-driven criteria (nil for magnitude and random).
    public var calibration: CalibrationSet?
    public var seed: UInt64
    public var threads: Int
    /// Masks of earlier rounds (iterative, gradual): those weights stay pruned.
    public var previous: PruningMasks = [:]
    /// Per-layer sparsities by weight name that replace the recipe's (auto, energy).
    public var layerSparsity: [String: Double]?

    public init(calibration: CalibrationSet? = nil, seed: UInt64 = 0, threads: Int = 1) {
        self.calibration = calibration
        self.seed = seed
        self.threads = threads
    }
}

/// The weights a recipe prunes: every prunable weight except the protected layers (named by
/// weight, layer or node).
public func targetLayers(_ model: Graph, recipe: PruneRecipe) -> [String] {
    let protect = Set(recipe.protect)
    return model.prunableWeights.map(\.name).filter { name in
        let node = model.nodes.first { $0.inputs.count > 1 && $0.inputs[1] == name }?.name ?? ""
        return !protect.contains(name) && !protect.contains(StructuredPruning.layerName(name)) && !protect.contains(node)
    }
}

/// Prunes `model` to `sparsity` (the recipe's when nil) with the recipe's criterion and
/// granularity: masks for unstructured and N:M pruning (applied in place; OBS and SparseGPT
/// also update the surviving weights; the returned graph is `model`), or a smaller graph for
/// neuron and channel pruning. Returns the graph and the masks fine-tuning must keep (none
/// for structured pruning: the units are gone).
public func prune(_ model: Graph, recipe: PruneRecipe, sparsity: Double? = nil, context: PruningContext = PruningContext()) throws
    -> (graph: Graph, masks: PruningMasks)
{
    let known = Set(model.nodes.map(\.name) + model.prunableWeights.flatMap { [$0.name, StructuredPruning.layerName($0.name)] })
    if let unknown = recipe.protect.first(where: { !known.contains($0) }) {
        throw StructuredPruningError(layer: unknown, message: "named in protect is not a layer of the model (layers: \(model.prunableWeights.map { StructuredPruning.layerName($0.name) }.joined(separator: ", ")))")
    }
    let amount = sparsity ?? recipe.sparsity
    if recipe.granularity == .layer { return (try BlockPruning.prune(model, recipe: recipe, sparsity: amount, context: context).0, [:]) }
    if recipe.granularity.isStructured {
        // The recipe's own amount in one step is held to what it asks; a schedule's small
        // steps may round to nothing in small layers.
        return try pruneUnits(model, recipe: recipe, sparsity: amount, context: context, holdToAmount: amount == recipe.sparsity)
    }
    let layers = targetLayers(model, recipe: recipe)
    let training = model.training
    model.training = false
    defer { model.training = training }
    // Masks and scores below are in the (outputs, inputs) view of each weight (`WeightView`).
    var context = context
    context.previous = model.viewedMasks(context.previous)
    var masks: PruningMasks = [:]
    switch recipe.method {
    case .obs, .sparsegpt:
        // scope global: per-layer ratios from one ranking of the OBS saliencies of the model
        // as it is (each layer's loss increase in reconstructing its own outputs).
        var ratios: [String: Double] = context.layerSparsity ?? [:]
        if context.layerSparsity == nil, recipe.scope == .global, recipe.granularity == .unstructured {
            let saliency = try layers.map { name -> (name: String, rows: Int, scores: [Double]) in
                let l = try layerHessian(model, name, recipe: recipe, context: context)
                return (name, l.rows, Reconstruction.obsSaliency(WeightView(model, name).view(l.weight.value.scalars), rows: l.rows, hInverse: SPD.inverse(lower: l.lower, n: l.cols),
                                                                 cols: l.cols, dead: l.dead))
            }
            for (l, r) in zip(layers, Selection.layerSparsities(Selection.locking(saliency, previous: context.previous), sparsity: amount)) { ratios[l] = r }
        }
        // Layer by layer in graph order; each layer's inputs come from the already pruned
        // layers before it (as SparseGPT runs).
        for name in layers {
            let (v, rowsCount, cols, dead, h, lower) = try layerHessian(model, name, recipe: recipe, context: context)
            let s = ratios[name] ?? amount
            let view = WeightView(model, name)
            let w = view.view(v.value.scalars)
            let updated: [Float]
            if recipe.method == .sparsegpt {
                var nm: (n: Int, m: Int)?
                if case let .nm(n, m) = recipe.granularity { nm = (n, m) }
                let r = Reconstruction.sparseGPT(w, rows: rowsCount, cols: cols, lowerH: lower, dead: dead, sparsity: s, nm: nm,
                                                 locked: context.previous[name])
                updated = r.weight
                masks[name] = r.mask
            } else {
                let hInv = SPD.inverse(lower: lower, n: cols)
                let layer = Selection.locking([(name, rowsCount, Reconstruction.obsSaliency(w, rows: rowsCount, hInverse: hInv, cols: cols, dead: dead))],
                                              previous: context.previous)[0]
                let mask: [Float]
                if case let .nm(n, m) = recipe.granularity { mask = Selection.nm(layer, n: n, m: m) } else {
                    mask = Selection.masks([layer], sparsity: s, scope: .layer)[name]!
                }
                updated = Reconstruction.obs(w, rows: rowsCount, cols: cols, mask: mask, h: h, hInverse: hInv)
                masks[name] = mask
            }
            let stored = view.stored(updated)
            v.update { p in for i in 0..<p.count { p[i] = stored[i] } }
        }
        masks = model.storedMasks(masks)
    case .lrp:
        preconditionFailure("lrp scores units; the recipe check refuses it for \(recipe.granularity.text)")
    default:
        let scores = Selection.locking(
            try Criteria.scores(recipe.method, model: model, layers: layers, calibration: context.calibration, seed: context.seed,
                                threads: context.threads),
            previous: context.previous)
        if case let .nm(n, m) = recipe.granularity {
            for l in scores { masks[l.name] = Selection.nm(l, n: n, m: m) }
        } else if let perLayer = context.layerSparsity {
            for l in scores { masks[l.name] = Selection.masks([l], sparsity: perLayer[l.name] ?? 0, scope: .layer)[l.name]! }
        } else if recipe.method == .wanda {
            // Wanda compares within each output row; with scope global the per-layer ratios
            // come from one ranking of the Wanda scores across layers.
            let ratios = recipe.scope == .global ? Selection.layerSparsities(scores, sparsity: amount) : scores.map { _ in amount }
            for (l, r) in zip(scores, ratios) { masks[l.name] = Selection.perRow(l, sparsity: r) }
        } else {
            masks = Selection.masks(scores, sparsity: amount, scope: recipe.scope)
        }
        masks = model.storedMasks(masks)
        applyMasks(masks, to: model)
    }
    return (model, masks)
}

/// A layer's weight, its (outputs, inputs) view's shape as (rows, cols), which inputs are dead (zero on every
/// calibration example), the dampened H = 2XXᵀ/n + λI and its lower Cholesky factor.
func layerHessian(_ model: Graph, _ name: String, recipe: PruneRecipe, context: PruningContext) throws
    -> (weight: Variable, rows: Int, cols: Int, dead: [Bool], h: [Double], lower: [Double])
{
    guard case .float(let v)? = model.initializer(name) else { preconditionFailure("'\(name)' is not a float parameter") }
    let view = WeightView(model, name)
    let rows = view.rows, cols = view.cols
    let xs = try Probe.layerRows(model, weight: name, calibration: context.calibration!, threads: context.threads)
    let (h, n, _) = Probe.hessian(xs, threads: context.threads)
    precondition(n == cols, "layer rows \(n) vs weight columns \(cols)")
    let (hd, lower) = SPD.dampened(h, n: cols, damping: recipe.damping)
    return (v, rows, cols, Reconstruction.deadInputs(h, cols: cols), hd, lower)
}

/// Neuron, channel and head pruning: units ranked by the recipe's criterion, then removed.
func pruneUnits(_ model: Graph, recipe: PruneRecipe, sparsity: Double, context: PruningContext, holdToAmount: Bool = false) throws -> (graph: Graph, masks: PruningMasks) {
    let (plan, keep) = try unitSelection(model, recipe: recipe, sparsity: sparsity, context: context, holdToAmount: holdToAmount)
    return (try plan.shrink(model, keep: keep), [:])
}

/// The groups of units structured pruning sees, and the units it keeps of each.
func unitSelection(_ model: Graph, recipe: PruneRecipe, sparsity: Double, context: PruningContext, holdToAmount: Bool = false) throws -> (plan: StructuredPlan, keep: [[Int]]) {
    let plan = try StructuredPruning.plan(model, granularity: recipe.granularity, protect: Set(recipe.protect))
    guard !plan.groups.isEmpty else {
        let what = recipe.granularity == .channel ? "channels (of Conv layers, or a transformer's width)" : recipe.granularity == .head ? "attention heads" : "Linear output features"
        let why = plan.kept.prefix(4).joined(separator: "; ") + (plan.kept.count > 4 ? "; …" : "")
        throw StructuredPruningError(layer: "(graph)", message: "granularity \(recipe.granularity.text) found no \(what) to remove" + (why.isEmpty ? "" : " (\(why))"))
    }
    let groups = plan.groups
    var scores: [[Double]]
    var fanIns = groups.map { _ in 1 }
    switch recipe.method {
    case .magnitude:
        scores = plan.norms(model, l1: recipe.norm == .l1)
        // Global ranking compares norms of rows of different lengths: divide by √fan-in.
        fanIns = plan.fanIns(model)
    case .random:
        var rng = Philox(seed: context.seed, stream: 13)
        scores = groups.map { g in (0..<g.units).map { _ in Double(rng.nextUnitFloat()) } }
    case .lrp:
        // Relevance normalized per layer to sum 1 (Yeom et al.), then ranked.
        let training = model.training
        model.training = false
        defer { model.training = training }
        // A coupled group's relevance is the sum over its members' outputs.
        let relevance = try LRP.unitRelevance(model, producers: plan.producers, batches: context.calibration!.batches, threads: context.threads)
        scores = plan.sums(perProducerChannel: relevance).map { v in
            let total = v.reduce(0, +)
            return total > 0 ? v.map { $0 / total } : v
        }
    case .taylor, .obd, .snip:
        // A unit's score is the sum of its weights' scores, normalized per layer by the L2
        // norm (Molchanov et al. 2017) so layers compare in a global ranking.
        let training = model.training
        model.training = false
        defer { model.training = training }
        let weights = plan.producerWeights
        let perWeight = try Criteria.scores(recipe.method, model: model, layers: weights,
                                            calibration: context.calibration, seed: context.seed, threads: context.threads)
        var stored: [String: [Double]] = [:]
        for l in perWeight { stored[l.name] = WeightView(model, l.name).stored(l.scores) }
        scores = plan.sums(model, of: stored).map { v in
            let norm = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
            return norm > 0 ? v.map { $0 / norm } : v
        }
    case .wanda, .sparsegpt, .obs, .auto, .energy:
        preconditionFailure("\(recipe.method.rawValue) prunes single weights; the recipe check refuses \(recipe.granularity.text)")
    }
    let keep = StructuredPruning.select(scores: scores, fanIns: fanIns, sparsity: sparsity, scope: recipe.scope)
    // A request that removes nothing, or far less than asked, must not pass as done.
    let total = groups.reduce(0) { $0 + $1.units }
    let removed = zip(groups, keep).reduce(0) { $0 + $1.0.units - $1.1.count }
    let asked = Int((sparsity * Double(total)).rounded(.down))
    if holdToAmount, sparsity > 0, asked >= 1, removed == 0 || 2 * removed < asked {
        let sizes = groups.prefix(6).map { "\($0.layers.first ?? "?"): \($0.units)" }.joined(separator: ", ") + (groups.count > 6 ? ", …" : "")
        let why = plan.kept.prefix(3).joined(separator: "; ")
        throw StructuredPruningError(layer: "(graph)", message: "granularity \(recipe.granularity.text) at sparsity \(sparsity) removes \(removed) of \(total) units, "
            + "far less than the \(asked) asked: \(recipe.scope == .layer ? "per layer, each group keeps at least one unit and rounds down" : "each group keeps at least one unit") "
            + "(units per group: \(sizes))" + (why.isEmpty ? "" : "; other layers keep all their units (\(why))"))
    }
    return (plan, keep)
}

extension PruneRecipe {
    /// Why this combination of settings cannot run, with the key to change; nil when it can.
    public var problem: (key: String, message: String)? {
        let m = method.rawValue
        switch method {
        case .lrp where !granularity.isStructured || granularity == .layer || granularity == .head:
            return ("granularity", "lrp ranks units; use granularity neuron or channel")
        case .wanda, .obs, .sparsegpt, .auto, .energy:
            if granularity.isStructured { return ("granularity", "\(m) prunes single weights; use unstructured or N:M") }
            if method.allocates, granularity != .unstructured { return ("granularity", "\(m) allocates unstructured sparsity per layer; use unstructured") }
        default: break
        }
        if granularity == .layer && ![.magnitude, .random, .taylor].contains(method) {
            return ("granularity", "layer pruning ranks blocks with magnitude, random or taylor")
        }
        if method.allocates && budget == nil {
            return ("budget", "\(m) needs a budget, e.g. budget: {max_accuracy_drop: 0.01}" + (method == .auto ? " or {max_latency_p50_us: 50}" : ""))
        }
        if !method.allocates && budget != nil { return ("budget", "only auto and energy take a budget") }
        if let b = budget {
            if b.maxAccuracyDrop == nil && b.maxLatencyP50 == nil {
                return ("budget", "needs max_accuracy_drop or max_latency_p50_us (or both)")
            }
            if b.maxLatencyP50 != nil && method != .auto { return ("budget", "max_latency_p50_us is for auto (energy ranks by estimated energy)") }
            if b.maxAccuracyDrop == nil && method == .energy { return ("budget", "energy needs max_accuracy_drop") }
        }
        if method == .snip && (finetune?.epochs ?? 0) == 0 {
            return ("finetune", "snip prunes at a fresh initialization and trains from scratch; give finetune epochs")
        }
        if distill != nil && (finetune?.epochs ?? 0) == 0 { return ("distill", "distillation happens during fine-tuning; give finetune epochs") }
        switch schedule {
        case .oneshot: break
        case .iterative:
            if [.snip, .auto, .energy].contains(method) { return ("schedule", "\(m) cuts once; use kind: oneshot") }
            if case .nm = granularity { return ("schedule", "an N:M pattern is cut at once; use kind: oneshot") }
        case .gradual:
            guard [.magnitude, .random, .taylor, .obd, .wanda].contains(method) else {
                return ("schedule", "gradual pruning recomputes masks during fine-tuning; it works with magnitude, random, taylor, obd and wanda")
            }
            if granularity != .unstructured { return ("schedule", "gradual pruning works with unstructured granularity") }
            if (finetune?.epochs ?? 0) == 0 { return ("schedule", "gradual pruning happens during fine-tuning; give finetune epochs") }
        }
        return nil
    }
}
