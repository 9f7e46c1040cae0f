#!/usr/bin/env python3
"""Writes the SD fixtures the C engine's tests compare against (tests/fixtures/sd-tiny-{a,b,lcm}/, sd-tiny-b.safetensors).

Deterministic: every random tensor comes from torch.manual_seed. The layout is documented in
tests/fixtures/README.md. `make_fixtures.py lcm` writes sd-tiny-lcm/ alone, over sd-tiny-a as it is on disk. Self-consistency checks of the reference run first (asserts).
"""
import os
import sys


import json
import math


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sd_ref as R  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402  (after sd_ref, which re-runs the script under python3-torch)

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")

CA, D, U, CAU = "CrossAttnDownBlock2D", "DownBlock2D", "UpBlock2D", "CrossAttnUpBlock2D"

LONG = "a photo of a golden retriever dog playing in the green park with a red ball, " * 5
PROMPTS = ["", "a photo of a cat.", "A photo of a tench, Tinca tinca",
           "it's 2 dogs' toys!!  and   3 CATS,\t10 zebras", "a xylophone and a quokka", LONG.strip()]
# merges are learned on all prompts but the one with "xylophone"/"quokka", so those stay byte-level pieces
MERGE_TEXTS = [p for p in PROMPTS if "quokka" not in p]
N_MERGES = 120

IMG_PROMPTS = ["a photo of a cat.", "A photo of a tench, Tinca tinca"]
STRENGTH, STEPS, GUIDANCE = 0.6, 5, 7.5
UNET_TIMESTEPS = [999, 500, 1]

CONFIGS = [
    dict(name="sd-tiny-a", seed=1, dtype=torch.float32, image=16,
         unet=R.unet_config((16, 24), [CA, D], [U, CAU], 1, 2, 32, False, groups=8, sample_size=8),
         vae=R.vae_config((8, 16), 1, groups=4, sample_size=16),
         clip=dict(hidden=32, layers=2, heads=2, inter=64), deprecated_vae=False, clip_position_ids=False,
         single_file=False),
    dict(name="sd-tiny-b", seed=2, dtype=torch.float16, image=32,
         unet=R.unet_config((8, 16, 16), [CA, CA, D], [U, CAU, CAU], 2, [1, 2, 4], 48, True, groups=4,
                            sample_size=8),
         vae=R.vae_config((8, 16, 16), 2, groups=4, sample_size=32),
         clip=dict(hidden=48, layers=2, heads=4, inter=96), deprecated_vae=True, clip_position_ids=True,
         single_file=True),
]


def perturb_norms(module, gen):
    """Non-trivial affine parameters for every GroupNorm/LayerNorm (default init is 1/0, which would hide a
    missing scale or shift)."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (torch.nn.GroupNorm, torch.nn.LayerNorm)):
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=gen))


def test_image(S, k):
    """A smooth deterministic RGB pattern, uint8 [S,S,3]."""
    y, x = np.mgrid[0:S, 0:S].astype(np.float64) / S
    r = 0.5 + 0.5 * np.sin(2 * math.pi * (x + 0.3 * k) + 1.0)
    g = 0.5 + 0.5 * np.cos(2 * math.pi * (y * (1 + k)) + 0.5 * x)
    b = (x * (1 - y) + 0.25 * k) % 1.0
    return np.clip(np.round(np.stack([r, g, b], -1) * 255), 0, 255).astype(np.uint8)


def to_tensor(img):
    """uint8 [H,W,3] -> [1,3,H,W] in [-1,1] (diffusers preprocess: x/255*2-1)."""
    return torch.from_numpy(img.astype(np.float32) / 255.0 * 2 - 1).permute(2, 0, 1)[None].contiguous()


def build(cfg, vocab, merges):
    torch.manual_seed(cfg["seed"])
    gen = torch.Generator().manual_seed(cfg["seed"] + 100)
    c = cfg["clip"]
    ccfg = R.clip_config(c["hidden"], c["layers"], c["heads"], c["inter"], len(vocab))
    clip, unet, vae = R.CLIPTextModel(ccfg), R.UNet2DConditionModel(cfg["unet"]), R.AutoencoderKL(cfg["vae"])
    for m in (clip, unet, vae):
        perturb_norms(m, gen)
        R.round_weights(m, cfg["dtype"])
        m.eval()
    return R.SDModel(R.CLIPTokenizer(vocab, merges), clip, unet, vae), ccfg


def check_tokenizer(tok):
    for p in PROMPTS:
        ids = tok(p)
        assert len(ids) == 77 and ids[0] == tok.bos
        n = len(tok.tokens(p))
        if n <= 75:
            assert ids[n + 1] == tok.eos and all(i == tok.pad for i in ids[n + 2:])
            assert tok.decode(ids).replace(" ", "") == R.clean_text(p).replace(" ", "")
        else:
            assert ids[76] == tok.eos and ids[1:76] == tok.tokens(p)[:75]
    assert tok("") == [tok.bos, tok.eos] + [tok.eos] * 75
    assert len(tok.tokens(LONG)) > 75
    # "'s" splits off, digits are single tokens, a punctuation run is one word, case and whitespace fold
    assert R.pre_tokenize("it's 10 DOGS!!  x") == ["it", "'s", "1", "0", "dogs", "!!", "x"]
    # un-merged words fall back to byte symbols, last one with </w>
    assert tok.bpe("quokka")[-1].endswith("</w>")


def check_schedules():
    ac, _ = R.alphas_cumprod()
    assert abs(ac[0].item() - 0.99915) < 1e-6 and abs(ac[999].item() - 0.004660) < 2e-6
    d = R.DDIM()
    d.set_timesteps(50)
    assert d.timesteps[0] == 981 and d.timesteps[-1] == 1 and len(d.timesteps) == 50
    ts = R.SDModel.img2img_timesteps(R.DDIM(), 50, 0.3)
    assert len(ts) == 15 and ts[0] == 281
    assert len(R.SDModel.img2img_timesteps(R.DDIM(), 50, 1.0)) == 50
    p = R.DPMSolverPP()
    p.set_timesteps(50)
    t = [int(v) for v in p.timesteps]
    assert t[:2] == [999, 979] and 519 in t and 500 in t and 480 in t and t[-1] == 20
    # with a perfect epsilon model every sampler lands exactly on the forward-noised point of its next timestep
    g = torch.Generator().manual_seed(7)
    x0, eps = torch.randn(1, 4, 4, 4, generator=g), torch.randn(1, 4, 4, 4, generator=g)
    for kind, n in (("ddim", 10), ("dpm", 10), ("dpm", 20)):
        s = R.make_scheduler(kind)
        s.set_timesteps(n)
        x = R.add_noise(s.ac, x0, eps, s.timesteps[0])
        for i, t in enumerate(s.timesteps):
            x = s.step(eps, t, x)
            nxt = s.timesteps[i + 1] if i + 1 < len(s.timesteps) else None
            if nxt is not None:
                want = R.add_noise(s.ac, x0, eps, nxt)
            elif kind == "ddim":
                want = R.add_noise(s.ac, x0, eps, 0)   # set_alpha_to_one false: final alpha = ac[0]
            else:
                want = R.add_noise(s.ac, x0, eps, 0)   # 0.19 DPM ends at timestep 0
            assert torch.allclose(x, want, atol=2e-5), (kind, n, i)


def check_single_file(model, cfg):
    usd, vsd, csd = model.unet.state_dict(), model.vae.state_dict(), model.clip.state_dict()
    sf = R.to_single_file(usd, vsd, csd, cfg["unet"], cfg["vae"])
    u2, v2, c2 = R.from_single_file(sf, cfg["unet"], cfg["vae"])
    for a, b in ((usd, u2), (vsd, v2), (csd, c2)):
        assert set(a) == set(b), set(a) ^ set(b)
        for k in a:
            assert torch.equal(a[k], b[k]), k
    assert len(sf) == len(usd) + len(vsd) + len(csd) + 8
    # the generic layout reproduces SD 1.5's landmark names
    sd15 = R.unet_config((320, 640, 1280, 1280), [CA, CA, CA, D], [U, CAU, CAU, CAU], 2, 8, 768, False)
    names = {l for _, l, _ in R._unet_layout(sd15)}
    for want in ("input_blocks.3.0.op", "input_blocks.6.0.op", "input_blocks.9.0.op", "input_blocks.11.0",
                 "output_blocks.2.1.conv", "output_blocks.5.2.conv", "output_blocks.8.2.conv",
                 "output_blocks.11.1", "middle_block.1", "input_blocks.8.1"):
        assert want in names, want
    assert "input_blocks.10.1" not in names and "output_blocks.2.1" not in names
    vl = {d: l for d, l, _ in R._vae_layout(R.vae_config((128, 256, 512, 512), 2))}
    assert vl["decoder.up_blocks.0.resnets.2"] == "decoder.up.3.block.2"
    assert vl["decoder.up_blocks.3.resnets.0"] == "decoder.up.0.block.0"
    assert vl["encoder.down_blocks.2.downsamplers.0.conv"] == "encoder.down.2.downsample.conv"
    return sf


def load_folder(dirpath, cfg, ccfg, vocab, merges):
    """Rebuilds the models from the written folder (undoing the deprecated VAE names) to prove the files are
    what the refs were computed from."""
    clip, unet, vae = R.CLIPTextModel(ccfg), R.UNet2DConditionModel(cfg["unet"]), R.AutoencoderKL(cfg["vae"])
    inv = {v: k for k, v in R.VAE_DEPRECATED_ATTN.items()}
    vsd = {}
    for k, v in R.load_safetensors(os.path.join(dirpath, "vae", "diffusion_pytorch_model.safetensors")).items():
        for old, new in inv.items():
            k = k.replace(".attentions.0." + old + ".", ".attentions.0." + new + ".")
        vsd[k] = v.float()
    csd = {k: v.float() for k, v in R.load_safetensors(os.path.join(dirpath, "text_encoder", "model.safetensors")).items()
           if not k.endswith("position_ids")}
    usd = {k: v.float() for k, v in
           R.load_safetensors(os.path.join(dirpath, "unet", "diffusion_pytorch_model.safetensors")).items()}
    clip.load_state_dict(csd, strict=True)
    unet.load_state_dict(usd, strict=True)
    vae.load_state_dict(vsd, strict=True)
    tok = R.CLIPTokenizer.from_files(os.path.join(dirpath, "tokenizer", "vocab.json"),
                                     os.path.join(dirpath, "tokenizer", "merges.txt"))
    assert tok.vocab == vocab and list(tok.ranks) == [tuple(m) for m in merges]
    for m in (clip, unet, vae):
        m.eval()
    return R.SDModel(tok, clip, unet, vae)


def sched_refs(refs):
    ac, _ = R.alphas_cumprod()
    refs["sched.alphas_cumprod"] = ac
    for kind, ns in (("ddim", (5, 20, 50)), ("dpm", (5, 20, 25, 50))):
        for n in ns:
            s = R.make_scheduler(kind)
            s.set_timesteps(n)
            refs[f"sched.{kind}.t{n}"] = s.timesteps.float()
    g = torch.Generator().manual_seed(11)
    x = torch.randn(1, 4, 4, 4, generator=g)
    eps = torch.randn(20, 1, 4, 4, 4, generator=g)
    refs["sched.x"], refs["sched.eps"] = x, eps
    for kind, n, start in (("ddim", 5, 0), ("ddim", 20, 0), ("dpm", 5, 0), ("dpm", 5, 2), ("dpm", 20, 0)):
        s = R.make_scheduler(kind)
        s.set_timesteps(n)
        y, traj = x.clone(), []
        for i, t in enumerate(s.timesteps[start:]):
            y = s.step(eps[i], t, y)
            traj.append(y)
        refs[f"sched.{kind}.n{n}s{start}"] = torch.stack(traj)


def fnv1a64(text):
    h = 0xcbf29ce484222325
    for b in text.encode():
        h = ((h ^ b) * 0x100000001b3) & 0xffffffffffffffff
    return h


# the cases the engine once got wrong, or where diffusers' schedule cannot be run: their full lists
TIMESTEP_EDGES = [("ddim", "linspace", 1), ("ddim", "trailing", 48), ("ddim", "trailing", 61), ("ddim", "trailing", 96),
                  ("dpm", "trailing", 48), ("dpm", "trailing", 61), ("dpm", "trailing", 96), ("ddim", "leading", 1000),
                  ("dpm", "leading", 999), ("dpm", "leading", 1000), ("dpm", "linspace", 1000)]


def timestep_tables(d):
    """diffusers 0.19's timesteps for 1..1000 steps x spacing x scheduler with SD 1.5's scheduler config: per case
    the count, first, last and FNV-1a 64 of the decimal list joined by commas; the edge cases in full."""
    import csv
    os.makedirs(d, exist_ok=True)
    rows, full = [], {}
    for kind in ("ddim", "dpm"):
        for spacing in ("leading", "linspace", "trailing"):
            for n in range(1, 1001):
                ts = [int(t) for t in R.diffusers_timesteps(kind, n, spacing)]
                rows.append([kind, spacing, n, len(ts), ts[0], ts[-1], "%016x" % fnv1a64(",".join(map(str, ts)))])
                if (kind, spacing, n) in TIMESTEP_EDGES:
                    full[kind, spacing, n] = " ".join(map(str, ts))
    edges = [[*case, full[case]] for case in TIMESTEP_EDGES]
    # the known answers: numpy's arange gives 937.4999999999999 where 1000 - 3 * 1000/48 is 937.5
    assert edges[1][3].split()[:4] == ["999", "978", "957", "936"] and edges[0][3] == "0"
    assert edges[2][3].split()[-1] == "-1" and edges[7][3].split()[0] == "1000"
    for name, table, head in (("timesteps.csv", rows, ["scheduler", "spacing", "steps", "count", "first", "last",
                                                        "fnv1a64"]),
                              ("timesteps-edges.csv", edges, ["scheduler", "spacing", "steps", "timesteps"])):
        with open(os.path.join(d, name), "w", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(head)
            w.writerows(table)


@torch.no_grad()
def model_refs(model, cfg, refs, info):
    tok = model.tok
    ids = torch.tensor([tok(p) for p in PROMPTS], dtype=torch.int64)
    refs["tok.ids"] = ids.float()
    tr = {}
    refs["clip.hidden"] = model.clip(ids)
    model.clip(ids[1:2], tr)
    for k, v in tr.items():
        refs[f"clip.trace.{k}"] = v
    info["prompts"] = PROMPTS
    info["clip_trace_prompt"] = 1

    # VAE
    S = cfg["image"]
    imgs = [test_image(S, k) for k in range(2)]
    for k, im in enumerate(imgs):
        R.write_png(os.path.join(ROOT, cfg["name"], f"img{k}.png"), im)
    image = torch.cat([to_tensor(im) for im in imgs])
    g = torch.Generator().manual_seed(cfg["seed"] + 200)
    h = S // 2 ** (len(cfg["vae"]["block_out_channels"]) - 1)
    vae_noise = torch.randn(2, 4, h, h, generator=g)
    latent_noise = torch.randn(2, 4, h, h, generator=g)
    tr = {}
    mean, logvar = model.vae.encode(image, tr)
    refs["vae.image"], refs["vae.mean"], refs["vae.logvar"] = image, mean, logvar
    refs["vae.noise"], refs["vae.sample"] = vae_noise, R.AutoencoderKL.sample(mean, logvar, vae_noise)
    dec_in = 3.0 * torch.randn(2, 4, h, h, generator=g)
    refs["vae.dec_in"] = dec_in
    refs["vae.dec_out"] = model.vae.decode(dec_in, tr)
    for k, v in tr.items():
        if k.startswith("enc.") or k in ("dec.mid", "dec.up0"):
            refs[f"vae.trace.{k}"] = v[:1]

    # UNet at batch 2 (uncond "", cond prompt 1), three timesteps, CFG combination
    x = torch.randn(2, 4, h, h, generator=g)
    ctx = model.encode_prompts(["", PROMPTS[1]])
    refs["unet.x"] = x   # context: clip.hidden rows 0 ("") and 1
    for t in UNET_TIMESTEPS:
        tr = {}
        out = model.unet(x, torch.tensor(t), ctx, tr if t == UNET_TIMESTEPS[0] else None)
        refs[f"unet.out.t{t}"] = out
        refs[f"unet.cfg.t{t}"] = out[:1] + GUIDANCE * (out[1:] - out[:1])
        single = torch.cat([model.unet(x[i:i + 1], torch.tensor(t), ctx[i:i + 1]) for i in range(2)])
        assert torch.allclose(single, out, atol=1e-5), "UNet batch rows must be independent"
        for k, v in tr.items():
            refs[f"unet.trace.{k}"] = v[:1]
    info["unet_timesteps"] = UNET_TIMESTEPS
    info["unet_trace_timestep"] = UNET_TIMESTEPS[0]

    # img2img (diffusers 0.19 StableDiffusionImg2ImgPipeline semantics) with both schedulers, and txt2img
    R.save_safetensors({"vae_noise": vae_noise, "latent_noise": latent_noise},
                       os.path.join(ROOT, cfg["name"], "noise.safetensors"))
    refs["img2img.vae_noise"], refs["img2img.latent_noise"] = vae_noise, latent_noise
    for kind in ("ddim", "dpm"):
        traj = []
        out, inf = model.img2img(image, IMG_PROMPTS, STRENGTH, STEPS, GUIDANCE, vae_noise, latent_noise, kind, traj)
        assert len(traj) == int(STEPS * STRENGTH) == 3
        refs[f"img2img.{kind}.timesteps"] = inf["timesteps"].float()
        refs[f"img2img.{kind}.x_init"] = inf["x_init"]
        refs[f"img2img.{kind}.latents"] = torch.stack(traj)
        refs[f"img2img.{kind}.image"] = out
        refs["img2img.z0"] = inf["z0"]
        assert torch.equal(inf["ctx"], refs["clip.hidden"][[0, 0, 1, 2]])
        # other strengths (batched engines mix them) and the posterior mean instead of a sample: final latents
        for r, name in ((0.4, "r04"), (1.0, "r10")):
            traj = []
            model.img2img(image, IMG_PROMPTS, r, STEPS, GUIDANCE, vae_noise, latent_noise, kind, traj)
            assert len(traj) == int(STEPS * r)
            refs[f"img2img.{kind}.{name}.final"] = traj[-1]
        traj = []
        model.img2img(image, IMG_PROMPTS, STRENGTH, STEPS, GUIDANCE, torch.zeros_like(vae_noise), latent_noise,
                      kind, traj)
        refs[f"img2img.{kind}.mean.final"] = traj[-1]
        # strength 1: every timestep of the schedule runs, from the noised image (not from pure noise)
        s = R.make_scheduler(kind)
        full = R.SDModel.img2img_timesteps(s, STEPS, 1.0)
        assert torch.equal(full, s.timesteps)

        traj = []
        out, inf = model.txt2img(IMG_PROMPTS, 3, GUIDANCE, latent_noise, kind, traj)
        refs[f"txt2img.{kind}.timesteps"] = inf["timesteps"].float()
        refs[f"txt2img.{kind}.latents"] = torch.stack(traj)
        refs[f"txt2img.{kind}.image"] = out
        # txt2img == the denoising loop of img2img at strength 1 started from pure noise
        s = R.make_scheduler(kind)
        ts = R.SDModel.img2img_timesteps(s, 3, 1.0)
        assert torch.allclose(model.denoise(s, ts, latent_noise, inf["ctx"], GUIDANCE), traj[-1], atol=0)
    info["img2img"] = {"prompts": IMG_PROMPTS, "negative_prompt": "", "strength": STRENGTH, "steps": STEPS,
                       "guidance": GUIDANCE, "images": ["img0.png", "img1.png"],
                       "noise_file": "noise.safetensors"}
    info["txt2img"] = {"prompts": IMG_PROMPTS, "steps": 3, "guidance": GUIDANCE,
                       "initial_latents": "latent_noise"}


# ---- LCM: a latent-consistency-distilled UNet (time_cond_proj_dim) beside sd-tiny-a's text encoder and VAE ----

LCM_NAME = "sd-tiny-lcm"
LCM_UNET = R.unet_config((8, 16), [CA, D], [U, CAU], 1, 2, 32, False, groups=4, sample_size=8, time_cond_proj_dim=8)
LCM_SHARED = ("text_encoder", "tokenizer", "vae")     # symbolic links to ../sd-tiny-a/<part>
LCM_TIMESTEPS = [(4, 1.0, 50), (4, 0.5, 50), (2, 0.6, 50), (1, 1.0, 50), (8, 1.0, 20), (3, 0.3, 20), (5, 0.7, 30),
                 (7, 1.0, 7)]
LCM_STEPS, LCM_GUIDANCE, LCM_SEED = 3, 8.5, 5
LCM_STRENGTHS = [0.5, 0.8]
TCD_STEP_ETAS, TCD_ETA = [0.0, 0.3, 1.0], 0.3


def check_lcm():
    s = R.LCM()
    s.set_timesteps(4)
    assert [int(t) for t in s.timesteps] == [999, 759, 499, 259]   # the LCM paper's 4-step schedule
    s.set_timesteps(4, 0.5)
    assert [int(t) for t in s.timesteps] == [499, 379, 259, 139]
    for n, strength in ((51, 1.0), (4, 0.06)):
        try:
            s.set_timesteps(n, strength)
            assert False, (n, strength)
        except ValueError:
            pass
    # with the true epsilon the data prediction is x0 and, far from t = 0, denoised is x0 within c_skip
    g = torch.Generator().manual_seed(8)
    x0, eps, z = (torch.randn(1, 4, 4, 4, generator=g) for _ in range(3))
    s.set_timesteps(4)
    t = s.timesteps[1]
    x = R.add_noise(s.ac, x0, eps, t)
    prev, den = s.step(eps, t, x, z)
    assert torch.allclose(den, x0, atol=1e-4) and torch.allclose(prev, R.add_noise(s.ac, den, z, s.timesteps[2]))
    # the Philox port reproduces common/philox.c (values printed by the C code)
    want = [-0.140846431, -0.428862691, 0.408527613, 1.62367213, -0.642013609, 0.501496971]
    assert np.allclose(R.philox_normal(1, 2, 6).numpy(), want, atol=1e-6)
    assert R.philox_mix(3, R.PHILOX_ENGINE_STEP) == 15562174171253546363


def write_lcm_folder(d, unet):
    os.makedirs(os.path.join(d, "unet"), exist_ok=True)
    os.makedirs(os.path.join(d, "scheduler"), exist_ok=True)
    for part in LCM_SHARED:
        link = os.path.join(d, part)
        if not os.path.islink(link):
            os.symlink(os.path.join("..", "sd-tiny-a", part), link)
    R.write_json(os.path.join(d, "model_index.json"), {
        "_class_name": "LatentConsistencyModelPipeline", "_diffusers_version": "0.27.2",
        "feature_extractor": [None, None], "requires_safety_checker": False, "safety_checker": [None, None],
        "scheduler": ["diffusers", "LCMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"]})
    R.write_json(os.path.join(d, "scheduler", "scheduler_config.json"), R.LCM_SCHEDULER_CONFIG)
    R.write_json(os.path.join(d, "unet", "config.json"), LCM_UNET)
    R.save_safetensors({k: v.detach().half().contiguous() for k, v in unet.state_dict().items()},
                       os.path.join(d, "unet", "diffusion_pytorch_model.safetensors"))


@torch.no_grad()
def lcm_refs(base):
    """refs of sd-tiny-lcm; base is sd-tiny-a's model (its tokenizer, text encoder and VAE are shared)."""
    check_lcm()
    torch.manual_seed(3)
    gen = torch.Generator().manual_seed(103)
    unet = R.UNet2DConditionModel(LCM_UNET)
    perturb_norms(unet, gen)
    R.round_weights(unet, torch.float16)
    unet.eval()
    d = os.path.join(ROOT, LCM_NAME)
    write_lcm_folder(d, unet)
    m = R.SDModel(base.tok, base.clip, unet, base.vae, R.LCM_SCHEDULER_CONFIG)
    refs, info = {}, {"config": LCM_NAME, "weights_dtype": "float16", "shared_with": "sd-tiny-a",
                      "shared_parts": list(LCM_SHARED)}

    # schedules: (steps, strength, original_inference_steps)
    for n, strength, orig in LCM_TIMESTEPS:
        s = R.LCM()
        s.set_timesteps(n, strength, orig)
        refs[f"lcm.t.n{n}.s{round(strength * 100)}.o{orig}"] = s.timesteps.float()
    info["timesteps"] = [list(c) for c in LCM_TIMESTEPS]

    # one step (4-step schedule 999, 759, 499, 259): index 1 injects the noise, index 3 returns denoised
    g = torch.Generator().manual_seed(12)
    x, eps, noise = (torch.randn(1, 4, 4, 4, generator=g) for _ in range(3))
    refs["step.x"], refs["step.eps"], refs["step.noise"] = x, eps, noise
    for pt in ("epsilon", "v_prediction"):
        for i in (1, 3):
            s = R.LCM(dict(R.LCM_SCHEDULER_CONFIG, prediction_type=pt))
            s.set_timesteps(4)
            refs[f"step.{'v' if pt == 'v_prediction' else 'eps'}.i{i}"] = s.step(eps, s.timesteps[i], x, noise)[0]

    # UNet with timestep_cond (rows: guidance 8.5 and 2), and without it
    S = 16
    g = torch.Generator().manual_seed(13)
    ux = torch.randn(2, 4, 8, 8, generator=g)
    ctx = m.encode_prompts(IMG_PROMPTS)
    tc = R.guidance_scale_embedding(torch.tensor([LCM_GUIDANCE - 1, 2.0 - 1]), LCM_UNET["time_cond_proj_dim"])
    refs["unet.x"], refs["unet.ctx"], refs["unet.tcond"] = ux, ctx, tc
    for t in (999, 259):
        refs[f"unet.out.t{t}"] = unet(ux, torch.tensor(t), ctx, timestep_cond=tc)
    refs["unet.nocond.t999"] = unet(ux, torch.tensor(999), ctx)
    assert not torch.allclose(refs["unet.nocond.t999"], refs["unet.out.t999"], atol=1e-3)

    # txt2img and img2img (two strengths in one engine batch), the engine's Philox noise between steps
    g = torch.Generator().manual_seed(14)
    vae_noise, latent_noise = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    refs["vae_noise"], refs["latent_noise"] = vae_noise, latent_noise
    image = torch.cat([to_tensor(test_image(S, k)) for k in range(2)])
    for mode in ("txt2img", "img2img"):
        trajs, outs, inits = [], [], []
        for k in range(2):
            traj = []
            r = LCM_STRENGTHS[k] if mode == "img2img" else 1.0
            out, inf = m.lcm(image[k:k + 1] if mode == "img2img" else None, IMG_PROMPTS[k], LCM_STEPS, r,
                             LCM_GUIDANCE, vae_noise[k:k + 1], latent_noise[k:k + 1], LCM_SEED, k,
                             R.LCM_SCHEDULER_CONFIG, traj)
            trajs.append(torch.cat(traj))
            outs.append(out)
            inits.append(inf["x_init"])
            refs[f"{mode}.timesteps.{k}"] = inf["timesteps"].float()
        refs[f"{mode}.x_init"] = torch.cat(inits)
        refs[f"{mode}.latents"] = torch.stack(trajs, 1)       # [steps, item, 4, 8, 8]
        refs[f"{mode}.image"] = torch.cat(outs)
    info["sampling"] = {"prompts": IMG_PROMPTS, "steps": LCM_STEPS, "guidance": LCM_GUIDANCE, "seed": LCM_SEED,
                        "streams": [0, 1], "img2img_strengths": LCM_STRENGTHS,
                        "images": ["../sd-tiny-a/img0.png", "../sd-tiny-a/img1.png"]}

    # TCD (TCDScheduler 0.27 in the same pipeline): one step at each eta, then img2img at TCD_ETA as above
    for pt in ("epsilon", "v_prediction"):
        for eta in TCD_STEP_ETAS:
            for i in (1, 3):
                s = R.TCD(dict(R.LCM_SCHEDULER_CONFIG, prediction_type=pt), eta)
                s.set_timesteps(4)
                refs[f"tcd.step.{'v' if pt == 'v_prediction' else 'eps'}.e{round(eta * 100)}.i{i}"] = \
                    s.step(eps, s.timesteps[i], x, noise)[0]
    trajs, outs = [], []
    for k in range(2):
        traj = []
        out, _ = m.lcm(image[k:k + 1], IMG_PROMPTS[k], LCM_STEPS, LCM_STRENGTHS[k], LCM_GUIDANCE,
                       vae_noise[k:k + 1], latent_noise[k:k + 1], LCM_SEED, k, R.LCM_SCHEDULER_CONFIG, traj, TCD_ETA)
        trajs.append(torch.cat(traj))
        outs.append(out)
    refs["tcd.img2img.latents"] = torch.stack(trajs, 1)
    refs["tcd.img2img.image"] = torch.cat(outs)
    info["tcd"] = {"step_etas": TCD_STEP_ETAS, "img2img_eta": TCD_ETA}
    R.save_safetensors({k: v.float().contiguous() for k, v in refs.items()}, os.path.join(d, "refs.safetensors"))
    info["tensors"] = {k: list(v.shape) for k, v in sorted(refs.items())}
    R.write_json(os.path.join(d, "refs.json"), info)
    total = 0
    for dp, _, fs in os.walk(d):
        total += sum(os.path.getsize(os.path.join(dp, f)) for f in fs if not os.path.islink(os.path.join(dp, f)))
    print(f"{LCM_NAME}: {len(refs)} reference tensors, {total / 1e6:.3f} MB")
    assert total < 0.25e6, "the LCM fixture grew past 0.25 MB"


def main():
    merges = R.learn_bpe(MERGE_TEXTS, N_MERGES)
    vocab = R.build_vocab(merges)
    if sys.argv[1:] == ["lcm"]:
        # only sd-tiny-lcm, over sd-tiny-a as written (its refs stay as they are)
        cfg = CONFIGS[0]
        c = cfg["clip"]
        ccfg = R.clip_config(c["hidden"], c["layers"], c["heads"], c["inter"], len(vocab))
        lcm_refs(load_folder(os.path.join(ROOT, cfg["name"]), cfg, ccfg, vocab, merges))
        return
    check_schedules()
    timestep_tables(os.path.join(ROOT, "sched"))
    total = 0
    loaded_a = None
    for cfg in CONFIGS:
        model, ccfg = build(cfg, vocab, merges)
        check_tokenizer(model.tok)
        d = os.path.join(ROOT, cfg["name"])
        os.makedirs(d, exist_ok=True)
        R.write_diffusers(d, model, cfg["unet"], cfg["vae"], ccfg, merges, cfg["dtype"],
                          cfg["deprecated_vae"], cfg["clip_position_ids"])
        loaded = load_folder(d, cfg, ccfg, vocab, merges)
        loaded_a = loaded_a or loaded
        sf = check_single_file(model, cfg)
        refs, info = {}, {"config": cfg["name"], "weights_dtype": str(cfg["dtype"]).replace("torch.", ""),
                          "vocab_size": len(vocab), "n_merges": len(merges)}
        sched_refs(refs)
        model_refs(model, cfg, refs, info)
        # the same refs from the models re-read from disk
        ids = refs["tok.ids"].long()
        assert torch.equal(loaded.clip(ids), refs["clip.hidden"])
        assert torch.equal(loaded.unet(refs["unet.x"], torch.tensor(999), refs["clip.hidden"][:2]), refs["unet.out.t999"])
        assert torch.equal(loaded.vae.decode(refs["vae.dec_in"]), refs["vae.dec_out"])
        if cfg["single_file"]:
            path = os.path.join(ROOT, cfg["name"] + ".safetensors")
            R.save_safetensors({k: v.to(cfg["dtype"]) if v.is_floating_point() and v.dim() > 0 else v
                                for k, v in sf.items()}, path)
            u, v, c = R.from_single_file(R.load_safetensors(path), cfg["unet"], cfg["vae"])
            m2 = R.UNet2DConditionModel(cfg["unet"])
            m2.load_state_dict(u)
            m2.eval()
            with torch.no_grad():
                assert torch.equal(m2(refs["unet.x"], torch.tensor(999), refs["clip.hidden"][:2]), refs["unet.out.t999"])
            info["single_file"] = cfg["name"] + ".safetensors"
        R.save_safetensors({k: v.float().contiguous() for k, v in refs.items()}, os.path.join(d, "refs.safetensors"))
        info["tensors"] = {k: list(v.shape) for k, v in sorted(refs.items())}
        R.write_json(os.path.join(d, "refs.json"), info)
        for dp, _, fs in os.walk(d):
            total += sum(os.path.getsize(os.path.join(dp, f)) for f in fs)
        print(f"{cfg['name']}: {len(refs)} reference tensors, vocab {len(vocab)}")
    total += sum(os.path.getsize(os.path.join(ROOT, c["name"] + ".safetensors")) for c in CONFIGS if c["single_file"])
    print(f"fixtures: {total / 1e6:.2f} MB")
    assert total < 3.3e6, "fixtures grew past 3.3 MB"
    lcm_refs(loaded_a)


if __name__ == "__main__":
    main()
