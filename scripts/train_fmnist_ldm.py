#!/usr/bin/env python3
"""Trains the bundled text-conditioned latent diffusion model of Fashion-MNIST (data/models/fmnist-ldm/).

Same component types and file format as Stable Diffusion 1.5 (diffusers 0.19 folder: CLIP BPE tokenizer,
CLIPTextModel, AutoencoderKL, UNet2DConditionModel with cross-attention, SD 1.5's scheduler config), built from
scripts/sd_ref.py, so the C engine runs it through exactly the code path it uses for SD 1.5.

Images: the 28x28 gray Fashion-MNIST images are resized to 32x32 with bilinear interpolation (half-pixel
centres, as `genie img2img` resizes a 28x28 source to the model size) and replicated to RGB, x = px/255*2-1.
The VAE maps 32x32x3 to 8x8x8 latents. Generated 32x32 images are classified as files: the classifier's
validation transform scales the shorter side to 28 and centre-crops (darknet resize_min + crop), the same path
GeNIe outputs take through the trainer's loader.

Training (all on the full balanced training set, 6000 images per class, Debian python3-torch, CPU):
  1. VAE: MSE + L1 + 0.5 x an edge term (L1 of the horizontal and vertical differences) + 1e-5 KL,
     `--vae-steps` steps of batch 64;
  2. the training set is encoded once (posterior mean and logvar); scaling_factor = 1 / std of the latents;
  3. UNet + CLIP text encoder jointly: epsilon-prediction MSE at uniform t in [0, 1000) on the SD 1.5
     scaled_linear schedule, latents sampled from the stored posterior each step, prompts "A photo of a <name>"
     (class name or a synonym), empty prompt with probability 0.1 so classifier-free guidance works; an EMA of
     the UNet and CLIP weights is what gets saved.
Deterministic for a seed (torch.manual_seed; CPU kernels at a fixed thread count, --threads).
Wall time with the defaults on the 2-core development machine (shared with other jobs): 5887 s (98 min);
data/models/fmnist-ldm/README.md has the details. The bundled model is this script with its defaults
(--out build/ldm-v3), continued with --init build/ldm-v3 --out build/ldm-v4 --unet-steps 5000 --lr 3e-4, and the
folder build/ldm-v4 copied.

With --init DIR (a model this script wrote), training continues from DIR: its VAE and scaling factor are kept
(no VAE training) and the UNet and text encoder start from its weights, for --unet-steps more steps at --lr.

usage: scripts/train_fmnist_ldm.py [--out DIR] [--seed S] [--vae-steps N] [--unet-steps N] [--threads T]
                                   [--snapshot-every N] [--init DIR --lr LR]
"""
import os
import sys


import argparse
import copy
import gzip
import json
import time


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sd_ref as R  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402  (after sd_ref, which re-runs the script under python3-torch)
import torch.nn.functional as F  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
IDX_DIR = "/usr/share/datasets/fashion-mnist"

# label index order of data/fmnist/labels.list; first name is the canonical prompt word
CLASS_NAMES = [["tee", "t-shirt", "top"], ["trouser", "trousers", "pants"], ["pullover", "sweater"], ["dress"],
               ["coat", "jacket"], ["sandal", "sandals"], ["shirt"], ["sneaker", "sneakers"], ["bag", "handbag"],
               ["boot", "ankle boot"]]
TEMPLATE = "A photo of a {}"

CA, D, U, CAU = "CrossAttnDownBlock2D", "DownBlock2D", "UpBlock2D", "CrossAttnUpBlock2D"
IMAGE = 32
# 32x32x3 -> 8x8xLATENT: 8 latent channels (SD's 4 lost the edges and texture of the clothes: the first bundled
# model's round trips blurred them, and classifiers learnt that smooth look as a label cue)
LATENT = 8
VAE_CFG = dict(R.vae_config((16, 32, 64), 1, groups=8, sample_size=IMAGE), latent_channels=LATENT)
# attention at the 4x4 level and in the mid block: the condition is global (which garment), so the 8x8 level
# does without it, which keeps training within minutes on two cores
UNET_CFG = dict(R.unet_config((64, 128), [D, CA], [CAU, U], 1, 4, 64, True, groups=16, sample_size=IMAGE // 4),
                in_channels=LATENT, out_channels=LATENT)
CLIP_SIZES = dict(hidden=64, layers=2, heads=2, inter=128)
P_UNCOND = 0.1


def read_idx(name):
    with gzip.open(os.path.join(IDX_DIR, name), "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def to_model_images(gray):
    """uint8 [N,28,28] -> float [N,3,32,32] in [-1,1]: bilinear resize (half-pixel centres), gray -> RGB."""
    x = torch.from_numpy(gray.astype(np.float32) / 255.0)[:, None]
    x = F.interpolate(x, size=(IMAGE, IMAGE), mode="bilinear", align_corners=False)
    return (x * 2 - 1).expand(-1, 3, -1, -1).contiguous()


def all_prompts():
    """The empty prompt, then every (class, name) prompt; returns (texts, class of each text or -1)."""
    texts, cls = [""], [-1]
    for c, names in enumerate(CLASS_NAMES):
        for n in names:
            texts.append(TEMPLATE.format(n))
            cls.append(c)
    return texts, cls


def make_tokenizer():
    texts, _ = all_prompts()
    merges = R.learn_bpe(texts[1:], 400)   # until every word is one token
    tok = R.CLIPTokenizer(R.build_vocab(merges), merges)
    for t in texts[1:]:
        words = R.pre_tokenize(t)
        assert len(tok.tokens(t)) == len(words), f"{t!r} is not one token per word"
    return tok, merges


def kl_loss(mean, logvar):
    return 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).mean()


def edge_loss(y, x):
    """L1 between the images' horizontal and vertical differences: MSE alone lets a decoder trade edges and
    texture for a smooth mean."""
    return (F.l1_loss(y[..., 1:, :] - y[..., :-1, :], x[..., 1:, :] - x[..., :-1, :]) +
            F.l1_loss(y[..., 1:] - y[..., :-1], x[..., 1:] - x[..., :-1]))


def train_vae(vae, images, steps, gen, log):
    vae.train()
    opt = torch.optim.Adam(vae.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.05)
    n, B, t0 = images.shape[0], 64, time.time()
    for step in range(steps):
        idx = torch.randint(0, n, (B,), generator=gen)
        x = images[idx].contiguous(memory_format=torch.channels_last)
        mean, logvar = vae.encode(x)
        z = R.AutoencoderKL.sample(mean, logvar, torch.randn(mean.shape, generator=gen))
        y = vae.decode(z)
        rec = F.mse_loss(y, x)
        loss = rec + F.l1_loss(y, x) + 0.5 * edge_loss(y, x) + 1e-5 * kl_loss(mean, logvar)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0 or step == steps - 1:
            log(f"vae step {step}/{steps} rec {rec.item():.5f} logvar {logvar.mean().item():.2f} "
                f"{time.time() - t0:.0f} s")
    vae.eval()


@torch.no_grad()
def encode_all(vae, images):
    means, logvars = [], []
    for i in range(0, images.shape[0], 500):
        m, lv = vae.encode(images[i:i + 500].contiguous(memory_format=torch.channels_last))
        means.append(m.contiguous())
        logvars.append(lv.contiguous())
    return torch.cat(means), torch.cat(logvars)


@torch.no_grad()
def ema_update(ema, model, decay):
    for pe, p in zip(ema.parameters(), model.parameters()):
        pe.mul_(decay).add_(p, alpha=1 - decay)


def load_init(init, vae, unet, clip):
    """Weights of a model this script wrote (F16 stored, F32 here); returns its VAE scaling factor."""
    for module, path in ((vae, "vae/diffusion_pytorch_model.safetensors"),
                         (unet, "unet/diffusion_pytorch_model.safetensors"),
                         (clip, "text_encoder/model.safetensors")):
        R.load_weights(module, os.path.join(init, path))
    with open(os.path.join(init, "vae", "config.json")) as f:
        return float(json.load(f)["scaling_factor"])


def train_unet(unet, clip, tok, mean, logvar, labels, sf, steps, gen, log, snapshot=None, lr=1e-3):
    texts, tcls = all_prompts()
    ids = torch.tensor([tok(t) for t in texts], dtype=torch.int64)
    by_class = [[i for i, c in enumerate(tcls) if c == k] for k in range(len(CLASS_NAMES))]
    ac, _ = R.alphas_cumprod()
    params = list(unet.parameters()) + list(clip.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    ema_u, ema_c = copy.deepcopy(unet), copy.deepcopy(clip)
    unet.train()
    clip.train()
    n, B, t0 = mean.shape[0], 128, time.time()
    for step in range(steps):
        idx = torch.randint(0, n, (B,), generator=gen)
        z0 = sf * R.AutoencoderKL.sample(mean[idx], logvar[idx], torch.randn(mean[idx].shape, generator=gen))
        # prompt per item: a random name of its class, or the empty prompt (index 0) with probability P_UNCOND
        pick = torch.rand(B, generator=gen)
        choice = torch.randint(0, 1 << 30, (B,), generator=gen)
        rows = [0 if pick[b] < P_UNCOND else by_class[int(labels[idx[b]])][int(choice[b]) % len(
            by_class[int(labels[idx[b]])])] for b in range(B)]
        ctx = clip(ids)[torch.tensor(rows)]    # all distinct prompts once per step, gathered per item
        t = torch.randint(0, 1000, (B,), generator=gen)
        eps = torch.randn(z0.shape, generator=gen)
        a = ac[t].view(B, 1, 1, 1)
        x = a.sqrt() * z0 + (1 - a).sqrt() * eps
        loss = F.mse_loss(unet(x, t, ctx), eps)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        decay = min(0.999, (1 + step) / (10 + step))
        ema_update(ema_u, unet, decay)
        ema_update(ema_c, clip, decay)
        if step % 50 == 0 or step == steps - 1:
            log(f"unet step {step}/{steps} loss {loss.item():.4f} {time.time() - t0:.0f} s")
        if snapshot and (step + 1) % snapshot[0] == 0 and step + 1 < steps:
            snapshot[1](copy.deepcopy(ema_u), copy.deepcopy(ema_c), step + 1)
    return ema_u.eval(), ema_c.eval()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "data", "models", "fmnist-ldm"))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--vae-steps", type=int, default=4000)
    ap.add_argument("--unet-steps", type=int, default=5000)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (one trains faster on a busy 2-core machine)")
    ap.add_argument("--snapshot-every", type=int, default=0, help="also write OUT-stepN every N UNet steps")
    ap.add_argument("--init", help="continue from this model folder (its VAE kept, the UNet and text encoder trained on)")
    ap.add_argument("--lr", type=float, default=1e-3, help="the UNet's peak learning rate (one-cycle)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    t_start = time.time()

    def log(s):
        print(f"[{time.time() - t_start:7.1f} s] {s}", flush=True)

    images = to_model_images(read_idx("train-images-idx3-ubyte.gz"))
    labels = torch.from_numpy(read_idx("train-labels-idx1-ubyte.gz").astype(np.int64))
    counts = torch.bincount(labels, minlength=10)
    assert images.shape[0] == 60000 and bool((counts == 6000).all()), "expected the balanced 60000-image set"
    tok, merges = make_tokenizer()
    cc = CLIP_SIZES
    clip_cfg = R.clip_config(cc["hidden"], cc["layers"], cc["heads"], cc["inter"], len(tok.vocab))
    clip = R.CLIPTextModel(clip_cfg)
    vae = R.AutoencoderKL(dict(VAE_CFG)).to(memory_format=torch.channels_last)
    unet = R.UNet2DConditionModel(UNET_CFG)
    log(f"vocab {len(tok.vocab)}, params: clip {sum(p.numel() for p in clip.parameters())}, "
        f"vae {sum(p.numel() for p in vae.parameters())}, unet {sum(p.numel() for p in unet.parameters())}")

    if args.init:
        sf = load_init(args.init, vae, unet, clip)
        vae.eval()
        mean, logvar = encode_all(vae, images)
        log(f"continuing from {args.init}: its VAE (scaling_factor {sf:.5f}), UNet and text encoder")
    else:
        train_vae(vae, images, args.vae_steps, gen, log)
        R.round_weights(vae, torch.float16)   # the latents the UNet learns are those of the stored F16 VAE
        mean, logvar = encode_all(vae, images)
        sf = float(1.0 / R.AutoencoderKL.sample(mean, logvar, torch.randn(mean.shape, generator=gen)).std())
    vae.cfg["scaling_factor"] = sf
    with torch.no_grad():
        rec = F.mse_loss(vae.decode(mean[:500]), images[:500]).item()
    log(f"latents encoded: scaling_factor {sf:.5f}, reconstruction MSE of the means {rec:.5f}")

    vae = vae.to(memory_format=torch.contiguous_format)

    def save(u, c, steps_done):
        """Writes the F16 diffusers folder (the EMA weights); snapshots during training go to OUT-stepN."""
        out = args.out if steps_done == args.unet_steps else f"{args.out}-step{steps_done}"
        R.round_weights(u, torch.float16)
        R.round_weights(c, torch.float16)
        os.makedirs(out, exist_ok=True)
        R.write_diffusers(out, R.SDModel(tok, c, u, vae), UNET_CFG, vae.cfg, clip_cfg, merges, dtype=torch.float16)
        R.write_json(os.path.join(out, "training.json"), {
            "seed": args.seed, "vae_steps": 0 if args.init else args.vae_steps, "vae_batch": 64,
            "unet_steps": steps_done, "init": args.init, "unet_lr": args.lr,
            "unet_batch": 128, "p_uncond": P_UNCOND, "class_names": CLASS_NAMES, "template": TEMPLATE,
            "scaling_factor": sf, "vae_recon_mse": rec, "wall_s": round(time.time() - t_start, 1),
            "threads": torch.get_num_threads()})
        log(f"wrote {out}")

    unet, clip = train_unet(unet, clip, tok, mean, logvar, labels, sf, args.unet_steps, gen, log,
                            (args.snapshot_every, save) if args.snapshot_every else None, args.lr)
    save(unet, clip, args.unet_steps)


if __name__ == "__main__":
    main()
