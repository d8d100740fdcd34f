"""Writes the reference fixtures for Defeat.Clip.Tests.

Run under Debian's PyTorch 1.13 with the reference CLIP code (and ftfy for the tokenizer):

    PYTHONPATH=/work/ref/rspeer+python-ftfy /usr/bin/python3 make_fixtures.py /work/ref/openai+CLIP [out_dir]

Everything is built from fixed seeds; the reference code is imported, never copied.
Outputs (all small):
  tiny_openai.pt          state dict of a tiny random CLIP (OpenAI key layout, torch.save zip)
  tiny_hf.safetensors     the same weights in the Hugging Face layout
  tiny_torchscript.pt     the same model traced with torch.jit and stored in fp16, as OpenAI's release
  tiny_tecoa.pt           {"vision_encoder_state_dict": another image tower, "epoch": 3}
  tiny_merges.txt         header + first 64 BPE merges (the tiny model's tokenizer, vocab 578)
  tiny_reference.safetensors  inputs and reference outputs
  tokenizer_cases.json    texts and reference ids of the full CLIP tokenizer
  preprocess.json + preprocess_input.png  reference preprocessing of a small image
Weights are rounded to float16 values so the fp16 TorchScript archive holds exactly the same numbers.
"""
import gzip
import json
import os
import struct
import sys

import numpy as np
import torch

REF = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("CLIP_REF", "/work/ref/openai+CLIP")
OUT = sys.argv[2] if len(sys.argv) > 2 else os.path.dirname(os.path.abspath(__file__))


def _load(name, path):
    # Import one reference file without the package's __init__ (which needs torchvision).
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


ref_model = _load("clip_model", os.path.join(REF, "clip", "model.py"))
SimpleTokenizer = _load("clip_simple_tokenizer", os.path.join(REF, "clip", "simple_tokenizer.py")).SimpleTokenizer

torch.manual_seed(1234)
torch.set_grad_enabled(False)

# ---- a tiny model: widths 32, 2 heads, 2 layers, 32 px images, 8 px patches (4x4 grid), D = 16 ----
EMBED, RES, PATCH, WIDTH, LAYERS, HEADS, CTX, MERGES = 16, 32, 8, 32, 2, 2, 77, 64
VOCAB = 512 + MERGES + 2  # byte symbols (with and without </w>), merges, start, end


_VisionTransformer = ref_model.VisionTransformer


def _vit_with_tiny_heads(input_resolution, patch_size, width, layers, heads, output_dim):
    # The reference sets the image heads to width // 64 (0 at width 32); use 2 heads, like the text side.
    return _VisionTransformer(input_resolution, patch_size, width, layers, HEADS, output_dim)


ref_model.VisionTransformer = _vit_with_tiny_heads


def make_model():
    m = ref_model.CLIP(EMBED, RES, LAYERS, WIDTH, PATCH, CTX, VOCAB, WIDTH, HEADS, LAYERS)
    for name, p in m.named_parameters():
        # Non-trivial values everywhere (layer norms and biases too), rounded to float16.
        if name.endswith("logit_scale"):
            p.copy_(torch.tensor(np.log(1 / 0.07)))
        elif ".ln" in name or name.startswith("ln_") or ".ln_" in name:
            p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn_like(p))
        elif name.endswith("bias"):
            p.copy_(0.02 * torch.randn_like(p))
        p.copy_(p.half().float())
    return m.eval()


model = make_model()
sd = {k: v.clone().contiguous() for k, v in model.state_dict().items()}
torch.save(sd, os.path.join(OUT, "tiny_openai.pt"))

# ---- inputs ----
mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
images = torch.rand(3, 3, RES, RES)
SOT, EOT = VOCAB - 2, VOCAB - 1
ids = torch.zeros(4, CTX, dtype=torch.long)
for i, n in enumerate([3, 7, 1, 75]):
    row = [SOT] + torch.randint(1, 500, (n,)).tolist() + [EOT]
    ids[i, : len(row)] = torch.tensor(row)
prompt_embeddings = 0.02 * torch.randn(4, CTX, WIDTH)


def reference_outputs(m):
    pixels = (images - mean) / std
    cls = m.encode_image(pixels)
    captured = {}
    h = m.visual.transformer.register_forward_hook(lambda mod, inp, out: captured.setdefault("x", out))
    m.encode_image(pixels)
    h.remove()
    tokens = captured["x"].permute(1, 0, 2)  # LND -> NLD
    # DEFEAT's grid: ln_post on the patch tokens, then @ proj.
    grid = m.visual.ln_post(tokens[:, 1:, :]) @ m.visual.proj
    text = m.encode_text(ids)
    # CoOp's text encoder on prompt embeddings (EOT = argmax of the ids).
    x = prompt_embeddings + m.positional_embedding
    x = m.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
    x = m.ln_final(x)
    prompt_text = x[torch.arange(x.shape[0]), ids.argmax(dim=-1)] @ m.text_projection
    logits, _ = m(pixels, ids)
    return {"class_features": cls, "grid_features": grid, "text_features": text,
            "prompt_text_features": prompt_text, "logits_per_image": logits}


def write_safetensors(path, tensors, metadata=None):
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        t = t.detach().contiguous()
        dtype = {torch.float32: "F32", torch.float16: "F16", torch.int64: "I64"}[t.dtype]
        data = t.numpy().tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


# ---- Hugging Face layout of the same weights ----
def to_hf(s):
    out = {}
    for tower, prefix, n_layers in [("vision_model", "visual.transformer", LAYERS), ("text_model", "transformer", LAYERS)]:
        for i in range(n_layers):
            src, dst = f"{prefix}.resblocks.{i}", f"{tower}.encoder.layers.{i}"
            qw, kw, vw = s[f"{src}.attn.in_proj_weight"].chunk(3)
            qb, kb, vb = s[f"{src}.attn.in_proj_bias"].chunk(3)
            for n, w, b in [("q", qw, qb), ("k", kw, kb), ("v", vw, vb)]:
                out[f"{dst}.self_attn.{n}_proj.weight"] = w
                out[f"{dst}.self_attn.{n}_proj.bias"] = b
            out[f"{dst}.self_attn.out_proj.weight"] = s[f"{src}.attn.out_proj.weight"]
            out[f"{dst}.self_attn.out_proj.bias"] = s[f"{src}.attn.out_proj.bias"]
            for a, b in [("ln_1", "layer_norm1"), ("ln_2", "layer_norm2")]:
                for p in ["weight", "bias"]:
                    out[f"{dst}.{b}.{p}"] = s[f"{src}.{a}.{p}"]
            for a, b in [("c_fc", "fc1"), ("c_proj", "fc2")]:
                for p in ["weight", "bias"]:
                    out[f"{dst}.mlp.{b}.{p}"] = s[f"{src}.mlp.{a}.{p}"]
    out["vision_model.embeddings.class_embedding"] = s["visual.class_embedding"]
    out["vision_model.embeddings.patch_embedding.weight"] = s["visual.conv1.weight"]
    out["vision_model.embeddings.position_embedding.weight"] = s["visual.positional_embedding"]
    out["vision_model.embeddings.position_ids"] = torch.arange(s["visual.positional_embedding"].shape[0]).unsqueeze(0)
    for a, b in [("visual.ln_pre", "vision_model.pre_layrnorm"), ("visual.ln_post", "vision_model.post_layernorm"),
                 ("ln_final", "text_model.final_layer_norm")]:
        for p in ["weight", "bias"]:
            out[f"{b}.{p}"] = s[f"{a}.{p}"]
    out["visual_projection.weight"] = s["visual.proj"].t()
    out["text_projection.weight"] = s["text_projection"].t()
    out["text_model.embeddings.token_embedding.weight"] = s["token_embedding.weight"]
    out["text_model.embeddings.position_embedding.weight"] = s["positional_embedding"]
    out["logit_scale"] = s["logit_scale"]
    return {k: v.contiguous() for k, v in out.items()}


write_safetensors(os.path.join(OUT, "tiny_hf.safetensors"), to_hf(sd), {"format": "pt"})

# ---- TorchScript archive in fp16, as OpenAI ships its checkpoints ----
to_trace = make_model()
to_trace.load_state_dict(sd)  # a copy: tracing shares parameters, and .half() below must not touch `model`
traced = torch.jit.trace(to_trace, ((images - mean) / std, ids), check_trace=False)
traced = traced.half()
torch.jit.save(traced, os.path.join(OUT, "tiny_torchscript.pt"))

# ---- TeCoA-style checkpoint: another image tower, without the "visual." prefix ----
robust = make_model()
tecoa = {"vision_encoder_state_dict": {k: v.clone() for k, v in robust.visual.state_dict().items()}, "epoch": 3}
torch.save(tecoa, os.path.join(OUT, "tiny_tecoa.pt"))
model_tecoa = make_model()
model_tecoa.load_state_dict(sd)
model_tecoa.visual.load_state_dict(tecoa["vision_encoder_state_dict"])

# ---- tiny tokenizer (first 64 merges) and zero-shot through it ----
with gzip.open(os.path.join(REF, "clip", "bpe_simple_vocab_16e6.txt.gz")) as f:
    lines = f.read().decode("utf-8").split("\n")
with open(os.path.join(OUT, "tiny_merges.txt"), "w", encoding="utf-8") as f:
    f.write("\n".join(lines[: MERGES + 1]))
tmp = os.path.join(OUT, "_tiny_merges.txt.gz")
with gzip.open(tmp, "wb") as f:
    f.write("\n".join(lines[: MERGES + 1]).encode("utf-8"))
tiny_tok = SimpleTokenizer(tmp)
os.remove(tmp)
assert len(tiny_tok.encoder) == VOCAB


def tiny_tokenize(texts):
    out = torch.zeros(len(texts), CTX, dtype=torch.long)
    for i, t in enumerate(texts):
        row = [tiny_tok.encoder["<|startoftext|>"]] + tiny_tok.encode(t) + [tiny_tok.encoder["<|endoftext|>"]]
        out[i, : len(row)] = torch.tensor(row)
    return out


class_names = ["cat", "dog", "ankle boot"]
templates = ["a photo of a {}.", "a blurry photo of the {}."]
class_feats = []
for c in class_names:
    f = model.encode_text(tiny_tokenize([t.format(c) for t in templates]))
    f = f / f.norm(dim=-1, keepdim=True)
    f = f.mean(dim=0)
    class_feats.append(f / f.norm())
class_feats = torch.stack(class_feats)
img = model.encode_image((images - mean) / std)
img = img / img.norm(dim=-1, keepdim=True)
zero_shot = model.logit_scale.exp() * img @ class_feats.t()

ref = reference_outputs(model)
ref_tecoa = reference_outputs(model_tecoa)
tensors = {"images": images, "token_ids": ids, "prompt_embeddings": prompt_embeddings,
           "zero_shot_logits": zero_shot, "zero_shot_class_features": class_feats,
           "zero_shot_ids": tiny_tokenize([templates[0].format(c) for c in class_names])}
tensors.update(ref)
tensors.update({"tecoa_" + k: v for k, v in ref_tecoa.items()})
write_safetensors(os.path.join(OUT, "tiny_reference.safetensors"), tensors,
                  {"class_names": json.dumps(class_names), "templates": json.dumps([t.replace("{}", "{0}") for t in templates])})

# ---- full tokenizer cases ----
tok = SimpleTokenizer(os.path.join(REF, "clip", "bpe_simple_vocab_16e6.txt.gz"))
cases = [
    "a photo of a cat", "Hello, world!", "A photo of a T-shirt/top.", "a photo of an ankle boot",
    "The quick brown fox jumps over the lazy dog.", "It's 3:45pm and we've got 12,345 items (≈ 99.5%)!",
    "don't you'll they're I'm she'd we've", "Café déjà vu, naïve résumé — crème brûlée", "e\u0301cole",
    "Ünïcödé Àççéñts ØÆÅ ß", "猫の写真", "这是一只猫的照片", "Фотография кошки", "صورة قطة", "🐱🐶 emoji 👍🏽 test",
    "&amp; &lt;b&gt;bold&lt;/b&gt; &quot;quoted&quot; &#39;single&#39; &amp;amp;", "Tom &amp; Jerry",
    "  lots   of\twhitespace\n\nand lines  ", "“curly quotes” and ‘single’", "ﬁne ﬂowers", "ＦＵＬＬＷＩＤＴＨ　ｔｅｘｔ１２３",
    "UPPER lower MiXeD", "x^2 + y_1 = z!!! ... ??? ---", "email@example.com http://example.com/a?b=c",
    "1234567890 ٣٤٥ ½", "<|startoftext|>hi<|endoftext|>", "'s 'll 'd'", "",
    " ".join(["word%d" % i for i in range(120)]),
]
results = []
for t in cases:
    results.append({"text": t, "ids": tok.encode(t)})
with open(os.path.join(OUT, "tokenizer_cases.json"), "w", encoding="utf-8") as f:
    json.dump(results, f, ensure_ascii=False, indent=0)

# ---- preprocessing: CLIP's Resize(n, bicubic) + CenterCrop(n) + ToTensor on a small image ----
from PIL import Image  # noqa: E402

rng = np.random.RandomState(7)
h, w, n = 30, 45, 16
yy, xx = np.mgrid[0:h, 0:w]
arr = np.stack([(xx * 255 // (w - 1)), (yy * 255 // (h - 1)), ((xx + yy) * 4) % 256], -1).astype(np.float64)
arr = np.clip(arr + rng.randint(-20, 21, size=arr.shape), 0, 255).astype(np.uint8)
Image.fromarray(arr).save(os.path.join(OUT, "preprocess_input.png"))
im = Image.open(os.path.join(OUT, "preprocess_input.png")).convert("RGB")
short, long_ = (w, h) if w <= h else (h, w)
new_long = int(n * long_ / short)
size = (n, new_long) if w <= h else (new_long, n)
im = im.resize(size, Image.BICUBIC)
top, left = int(round((im.height - n) / 2.0)), int(round((im.width - n) / 2.0))
im = im.crop((left, top, left + n, top + n))
pil = torch.from_numpy(np.asarray(im).astype(np.float32) / 255.0).permute(2, 0, 1)
# torch's bicubic with antialias on the same pixels, as a tensor pipeline would do it.
t = torch.from_numpy(arr.astype(np.float32) / 255.0).permute(2, 0, 1).unsqueeze(0)
nh, nw = (new_long, n) if w <= h else (n, new_long)
resized = torch.nn.functional.interpolate(t, size=(nh, nw), mode="bicubic", align_corners=False, antialias=True)
top, left = int(round((nh - n) / 2.0)), int(round((nw - n) / 2.0))
tens = resized[0, :, top:top + n, left:left + n]
with open(os.path.join(OUT, "preprocess.json"), "w") as f:
    json.dump({"size": n, "pil": pil.flatten().tolist(), "torch": tens.flatten().tolist()}, f)
print("fixtures written to", OUT)
