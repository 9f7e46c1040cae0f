#!/usr/bin/env python3
"""Writes the LoRA fixtures of the C engine's tests (tests/fixtures/lora/, layout in tests/fixtures/README.md):
for the sd-tiny-a model, one random LoRA file in each format genie reads and what the reference (scripts/sd_ref.py:
the LoRA branches unmerged beside their layers, as diffusers 0.19 and kohya-ss compute them) makes with it.

- diffusers.safetensors (F32, diffusers 0.19 "unet."/"text_encoder." keys): every UNet attention through
  LoRAAttnProcessor keys (<attn>.processor.to_q_lora.down.weight ...), ff.net.0.proj / ff.net.2 / the 1x1-conv
  proj_in through <module>.lora.down.weight, the text encoder's attention through to_q_lora ... (0.19's older
  spelling) and mlp.fc1 through lora_linear_layer; used at multiplier 1.
- kohya.safetensors (F16, kohya-ss keys): attention, ff, proj_in/out (1x1 conv), resnet conv1/conv2 (3x3 conv
  LoRA: lora_down [r, in, 3, 3], lora_up [out, r, 1, 1]), time_emb_proj, the downsampler (stride 2) and text
  encoder attention and mlp; alphas on most modules (scale alpha/rank), none on some (scale 1); used at
  multiplier 0.7 (genie's "-lora kohya.safetensors:0.7").

Deterministic (torch.manual_seed); needs Debian's python3-torch (re-executes under /usr/bin/python3).
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sd_ref as R  # noqa: E402
import torch  # noqa: E402
from make_fixtures import IMG_PROMPTS, STRENGTH, STEPS, GUIDANCE, PROMPTS  # noqa: E402

FIX = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
MODEL = os.path.join(FIX, "sd-tiny-a")
OUT = os.path.join(FIX, "lora")
KOHYA_MULT = 0.7
UNET_T = 500


def load_model():
    """sd-tiny-a as written on disk (F32)."""
    j = lambda *p: json.load(open(os.path.join(MODEL, *p)))  # noqa: E731
    clip = R.CLIPTextModel(j("text_encoder", "config.json"))
    unet, vae = R.UNet2DConditionModel(j("unet", "config.json")), R.AutoencoderKL(j("vae", "config.json"))
    for m, f in ((clip, "text_encoder/model.safetensors"), (unet, "unet/diffusion_pytorch_model.safetensors"),
                 (vae, "vae/diffusion_pytorch_model.safetensors")):
        m.load_state_dict(R.load_safetensors(os.path.join(MODEL, f)), strict=True)
        m.eval()
    tok = R.CLIPTokenizer.from_files(os.path.join(MODEL, "tokenizer", "vocab.json"),
                                     os.path.join(MODEL, "tokenizer", "merges.txt"))
    return R.SDModel(tok, clip, unet, vae)


def pair(g, out, inp, rank, k=None, std=0.15):
    """down [rank, in(, k, k)], up [out, rank(, 1, 1)]"""
    if k is None:
        return std * torch.randn(rank, inp, generator=g), std * torch.randn(out, rank, generator=g)
    return std * torch.randn(rank, inp, k, k, generator=g), std * torch.randn(out, rank, 1, 1, generator=g)


def weight(model, part, name):
    return (model.unet if part == "unet" else model.clip).get_submodule(name).weight


def diffusers_file(model, g):
    sd = {}
    attns = [n for n, _ in model.unet.named_modules() if n.endswith(".attn1") or n.endswith(".attn2")]
    for a in attns:
        for proc, mod in (("to_q_lora", "to_q"), ("to_k_lora", "to_k"), ("to_v_lora", "to_v"),
                          ("to_out_lora", "to_out.0")):
            w = weight(model, "unet", f"{a}.{mod}")
            d, u = pair(g, w.shape[0], w.shape[1], 4)
            sd[f"unet.{a}.processor.{proc}.down.weight"], sd[f"unet.{a}.processor.{proc}.up.weight"] = d, u
    blk = "down_blocks.0.attentions.0"
    for mod, conv in ((f"{blk}.transformer_blocks.0.ff.net.0.proj", False), (f"{blk}.transformer_blocks.0.ff.net.2",
                                                                             False), (f"{blk}.proj_in", True)):
        w = weight(model, "unet", mod)
        d, u = pair(g, w.shape[0], w.shape[1], 4, 1 if conv else None)
        sd[f"unet.{mod}.lora.down.weight"], sd[f"unet.{mod}.lora.up.weight"] = d, u
    for i in range(2):
        for proc, mod in (("to_q_lora", "q_proj"), ("to_k_lora", "k_proj"), ("to_v_lora", "v_proj"),
                          ("to_out_lora", "out_proj")):
            w = weight(model, "text_encoder", f"text_model.encoder.layers.{i}.self_attn.{mod}")
            d, u = pair(g, w.shape[0], w.shape[1], 4)
            pre = f"text_encoder.text_model.encoder.layers.{i}.self_attn.{proc}"
            sd[f"{pre}.down.weight"], sd[f"{pre}.up.weight"] = d, u
    w = weight(model, "text_encoder", "text_model.encoder.layers.0.mlp.fc1")
    d, u = pair(g, w.shape[0], w.shape[1], 4)
    pre = "text_encoder.text_model.encoder.layers.0.mlp.fc1.lora_linear_layer"
    sd[f"{pre}.down.weight"], sd[f"{pre}.up.weight"] = d, u
    return sd


def kohya_file(model, g):
    sd = {}
    mods = [("unet", n) for n in ("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",
                                   "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0",
                                   "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k",
                                   "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_v",
                                   "mid_block.attentions.0.transformer_blocks.0.attn2.to_q",
                                   "up_blocks.1.attentions.0.transformer_blocks.0.ff.net.0.proj",
                                   "up_blocks.1.attentions.0.transformer_blocks.0.ff.net.2",
                                   "down_blocks.0.attentions.0.proj_in", "up_blocks.1.attentions.0.proj_out",
                                   "down_blocks.0.resnets.0.conv1", "down_blocks.1.resnets.0.conv2",
                                   "up_blocks.0.resnets.1.conv1", "down_blocks.1.resnets.0.conv_shortcut",
                                   "mid_block.resnets.0.time_emb_proj", "down_blocks.0.downsamplers.0.conv")]
    mods += [("text_encoder", f"text_model.encoder.layers.{i}.{m}") for i in range(2)
             for m in ("self_attn.q_proj", "self_attn.v_proj", "self_attn.out_proj", "mlp.fc2")]
    for i, (part, n) in enumerate(mods):
        w = weight(model, part, n)
        rank = 2 if w.dim() == 4 and w.shape[2] == 3 else 4
        k = w.shape[2] if w.dim() == 4 else None
        d, u = pair(g, w.shape[0], w.shape[1], rank, k)
        ln = ("lora_unet_" if part == "unet" else "lora_te_") + n.replace(".", "_")
        sd[f"{ln}.lora_down.weight"], sd[f"{ln}.lora_up.weight"] = d.half(), u.half()
        if i % 4 != 3:   # every fourth module without alpha: scale 1
            sd[f"{ln}.alpha"] = torch.tensor(float(1 + i % 3), dtype=torch.float16)
    return sd


@torch.no_grad()
def outputs(model, refs, prefix, base):
    """CLIP hidden of prompts 0 and 1, the UNet at t=500 on unet.x with that context, img2img (DDIM)."""
    ids = torch.tensor([model.tok(p) for p in PROMPTS[:2]], dtype=torch.int64)
    hidden = model.clip(ids)
    refs[f"{prefix}.clip.hidden"] = hidden
    refs[f"{prefix}.unet.out"] = model.unet(base["unet.x"], torch.tensor(UNET_T), hidden)
    noise = R.load_safetensors(os.path.join(MODEL, "noise.safetensors"))
    image, _ = model.img2img(base["vae.image"], IMG_PROMPTS, STRENGTH, STEPS, GUIDANCE, noise["vae_noise"],
                             noise["latent_noise"], "ddim")
    refs[f"{prefix}.img2img.image"] = image


def merged_check(entries, mult, model_path_state):
    """Self-check: W + mult * alpha/rank * up @ down (kxk conv downs flattened) gives the branches' outputs."""
    unet_sd, clip_sd = model_path_state
    for part, mod, down, up, alpha in entries:
        sd = unet_sd if part == "unet" else clip_sd
        w = sd[mod + ".weight"]
        f = mult * (alpha / down.shape[0] if alpha is not None else 1.0)
        delta = up.float().reshape(up.shape[0], -1) @ down.float().reshape(down.shape[0], -1)
        sd[mod + ".weight"] = w + f * delta.reshape(w.shape)


def main():
    torch.manual_seed(5)
    g = torch.Generator().manual_seed(505)
    os.makedirs(OUT, exist_ok=True)
    base = R.load_safetensors(os.path.join(MODEL, "refs.safetensors"))
    refs = {}
    m0 = load_model()
    base_out = {}   # without LoRA: each file must change every output
    outputs(m0, base_out, "base", base)
    assert torch.allclose(base_out["base.clip.hidden"], base["clip.hidden"][:2], atol=1e-6)
    assert torch.allclose(base_out["base.img2img.image"], base["img2img.ddim.image"], atol=1e-6)
    files = {"diffusers": (diffusers_file(m0, g), 1.0), "kohya": (kohya_file(m0, g), KOHYA_MULT)}
    for fmt, (sd, mult) in files.items():
        path = os.path.join(OUT, f"{fmt}.safetensors")
        R.save_safetensors(sd, path)
        sd = R.load_safetensors(path)
        m = load_model()
        entries = R.lora_diffusers_0_19(sd) if fmt == "diffusers" else R.lora_kohya(sd, m.unet, m.clip)
        assert len(entries) * 2 == sum(1 for k in sd if not k.endswith(".alpha"))
        R.apply_lora(m, entries, mult)
        outputs(m, refs, fmt, base)
        for k in ("clip.hidden", "unet.out", "img2img.image"):
            d = (refs[f"{fmt}.{k}"] - base_out[f"base.{k}"]).abs().max().item()
            assert d > 1e-2, f"{fmt}: the LoRA changes {k} by only {d}"
        # the merged weights (what genie computes) agree with the unmerged branches
        mm = load_model()
        usd, csd = dict(mm.unet.state_dict()), dict(mm.clip.state_dict())
        merged_check(entries, mult, (usd, csd))
        mm.unet.load_state_dict(usd)
        mm.clip.load_state_dict(csd)
        chk = {}
        outputs(mm, chk, fmt, base)
        for k, v in chk.items():
            assert torch.allclose(v, refs[k], atol=2e-5), f"{k}: merged differs by {(v - refs[k]).abs().max()}"
        print(f"{fmt}: {len(entries)} modules, {os.path.getsize(path)} bytes")
    R.save_safetensors({k: v.float().contiguous() for k, v in refs.items()}, os.path.join(OUT, "refs.safetensors"))
    R.write_json(os.path.join(OUT, "refs.json"), {
        "model": "sd-tiny-a", "multipliers": {"diffusers": 1.0, "kohya": KOHYA_MULT}, "clip_prompts": PROMPTS[:2],
        "unet": {"x": "sd-tiny-a refs unet.x", "t": UNET_T, "context": "<fmt>.clip.hidden"},
        "img2img": {"prompts": IMG_PROMPTS, "strength": STRENGTH, "steps": STEPS, "guidance": GUIDANCE,
                    "scheduler": "ddim", "noise": "sd-tiny-a/noise.safetensors"},
        "tensors": {k: list(v.shape) for k, v in sorted(refs.items())}})
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print(f"lora fixtures: {total} bytes")
    assert total < 200_000


if __name__ == "__main__":
    main()
