#!/usr/bin/env python3
"""PyTorch (CPU) timing of the SD reference on a model of realistic proportions with random weights, the
counterpart of the C engine in scripts/bench_engine.sh; or, with --model DIR, of a diffusers folder (the bundled
data/models/fmnist-ldm: scripts/bench_genie.sh), its size taken from the folder.

The model is seeded, so `--save DIR` (a diffusers folder + image.png + noise.safetensors + bench.json) lets the C
engine load and run exactly the same computation; with --model, --save writes the inputs and torch's output only.
Output: machine-readable lines `torch <key> <value>`, among them
  unet_forward_s   one UNet call at the CFG batch 2B (median of --repeat after a warm-up)
  unet_flops       that call's FLOPs, counted analytically: 2*MACs of every convolution and linear layer and of
                   the attention products (q k^T and p v); norms, activations and elementwise ops not counted
  denoise_s        img2img's denoising loop (its steps, CFG and scheduler; no CLIP, no VAE)
  ms_per_item_step denoise_s per step per item, in ms

  python3 scripts/bench_engine_ref.py [--threads T] [--steps N] [--strength R] [--scheduler dpm|ddim]
                                      [--batch B] [--size PX] [--repeat K] [--save DIR] [--dtype f16|f32]
                                      [--no-img2img] [--model DIR [--prompt P] [--guidance G]]
"""
import os
import sys


import argparse
import json
import resource
import statistics
import time


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sd_ref as R  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402  (after sd_ref, which re-runs the script under python3-torch)

PROMPT = "a photo of a golden retriever."
CA, D, U, CAU = "CrossAttnDownBlock2D", "DownBlock2D", "UpBlock2D", "CrossAttnUpBlock2D"


def configs(size):
    unet = R.unet_config((128, 256, 512), [CA, CA, D], [U, CAU, CAU], 2, 8, 768, False, groups=32,
                         sample_size=size // 8)
    vae = R.vae_config((64, 128, 256, 256), 2, groups=32, sample_size=size)
    return unet, vae


def build(size, seed):
    torch.manual_seed(seed)
    merges = R.learn_bpe([PROMPT], 100)
    vocab = R.build_vocab(merges)
    ucfg, vcfg = configs(size)
    ccfg = R.clip_config(768, 4, 12, 3072, len(vocab))
    model = R.SDModel(R.CLIPTokenizer(vocab, merges), R.CLIPTextModel(ccfg), R.UNet2DConditionModel(ucfg),
                      R.AutoencoderKL(vcfg))
    for m in (model.clip, model.unet, model.vae):
        m.eval()
    return model, ucfg, vcfg, ccfg, merges


def image(size):
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) / size
    rgb = np.stack([0.5 + 0.5 * np.sin(6.283 * x), 0.5 + 0.5 * np.cos(6.283 * y * 2), (x + y) / 2], -1)
    return np.clip(np.round(rgb * 255), 0, 255).astype(np.uint8)


def unet_flops(unet, x, t, ctx, cond=None):
    """FLOPs of one UNet call (see the module doc): 2*MACs of Conv2d, Linear and the two attention products."""
    total = [0]

    def conv(m, inp, out):
        total[0] += 2 * out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def linear(m, inp, out):
        total[0] += 2 * out.numel() * m.in_features

    def attn(m, inp, out):   # q k^T and p v over all heads: 2 * 2 * B * Tq * Tk * inner
        x, c = inp[0], inp[1] if len(inp) > 1 and inp[1] is not None else inp[0]
        total[0] += 4 * x.shape[0] * x.shape[1] * c.shape[1] * m.to_q.out_features

    hooks = []
    for m in unet.modules():
        f = conv if isinstance(m, torch.nn.Conv2d) else linear if isinstance(m, torch.nn.Linear) else \
            attn if isinstance(m, R.Attention) else None
        if f:
            hooks.append(m.register_forward_hook(f))
    try:
        unet(x, t, ctx, timestep_cond=cond)
    finally:
        for h in hooks:
            h.remove()
    return total[0]


def timed(fn, repeat):
    ts, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), out


def model_shape(model):
    """A loaded diffusers folder's image size, latent channels and latent side."""
    size = model.vae.cfg["sample_size"]
    return size, model.vae.cfg["latent_channels"], size // 2 ** (len(model.vae.cfg["block_out_channels"]) - 1)


def inputs(a, size, lc, h):
    """The seeded inputs of img2img: the generator (drawn on after them), the posterior's and add_noise's epsilons,
    the test image and its batch in [-1, 1]."""
    g = torch.Generator().manual_seed(a.seed + 1)
    vae_noise = torch.randn(a.batch, lc, h, h, generator=g)
    latent_noise = torch.randn(a.batch, lc, h, h, generator=g)
    img = image(size)
    x_img = torch.from_numpy(img.astype(np.float32) / 255 * 2 - 1).permute(2, 0, 1)[None].repeat(a.batch, 1, 1, 1)
    return g, vae_noise, latent_noise, img, x_img


def print_unet(t_unet, batch, flops):
    print(f"torch unet_forward_s {t_unet:.4f}")
    print(f"torch unet_batch {batch}")
    print(f"torch unet_flops {flops}")
    print(f"torch unet_gflops_s {flops / t_unet / 1e9:.2f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--steps", type=int, default=10, help="scheduler steps N (img2img runs int(N*strength))")
    ap.add_argument("--strength", type=float, default=0.5)
    ap.add_argument("--scheduler", choices=("dpm", "ddim"), default="dpm")
    ap.add_argument("--guidance", type=float, default=7.5)
    ap.add_argument("--batch", type=int, default=1, help="images per call (UNet runs at 2*batch)")
    ap.add_argument("--size", type=int, default=256, help="image side in pixels (latent = size/8)")
    ap.add_argument("--repeat", type=int, default=3, help="UNet timings: median of this many (after a warm-up)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save", metavar="DIR", help="write the model as a diffusers folder (+ inputs) to DIR")
    ap.add_argument("--dtype", choices=("f16", "f32"), default="f16", help="weight dtype for --save")
    ap.add_argument("--no-img2img", action="store_true", help="time the UNet forward only")
    ap.add_argument("--model", metavar="DIR", help="time this diffusers folder instead (its own size)")
    ap.add_argument("--prompt", default=PROMPT)
    ap.add_argument("--tcd-eta", type=float, metavar="E",
                    help="an LCM-distilled --model: TCD with this eta, one UNet call per step at the batch (no CFG)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.tcd_eta is not None:
        if not a.model:
            ap.error("--tcd-eta needs --model")
        return consistency(a)

    if a.model:
        model = R.load_diffusers(a.model)
        a.size, lc, h = model_shape(model)
    else:
        if a.size % 8:
            ap.error("--size must be a multiple of 8")
        model, ucfg, vcfg, ccfg, merges = build(a.size, a.seed)
        dtype = torch.float16 if a.dtype == "f16" else torch.float32
        if dtype == torch.float16:   # compute from exactly the weights the C engine will load
            for m in (model.clip, model.unet, model.vae):
                R.round_weights(m, dtype)
        lc, h = 4, a.size // 8
    g, vae_noise, latent_noise, img, x_img = inputs(a, a.size, lc, h)
    if a.save and a.model:
        os.makedirs(a.save, exist_ok=True)
        R.write_png(os.path.join(a.save, "image.png"), img)
        R.save_safetensors({"vae_noise": vae_noise, "latent_noise": latent_noise},
                           os.path.join(a.save, "noise.safetensors"))
    elif a.save:
        os.makedirs(a.save, exist_ok=True)
        R.write_diffusers(a.save, model, ucfg, vcfg, ccfg, merges, dtype)
        R.write_png(os.path.join(a.save, "image.png"), img)
        R.save_safetensors({"vae_noise": vae_noise, "latent_noise": latent_noise},
                           os.path.join(a.save, "noise.safetensors"))
        R.write_json(os.path.join(a.save, "bench.json"), {
            "prompt": PROMPT, "image": "image.png", "noise": "noise.safetensors", "batch": a.batch,
            "steps": a.steps, "strength": a.strength, "scheduler": a.scheduler, "guidance": a.guidance,
            "size": a.size, "seed": a.seed})

    n_params = {k: sum(p.numel() for p in m.parameters())
                for k, m in (("unet", model.unet), ("vae", model.vae), ("clip", model.clip))}
    print(f"torch threads {a.threads}")
    print(f"torch version {torch.__version__}")
    for k, v in n_params.items():
        print(f"torch {k}_params {v}")

    with torch.no_grad():
        ctx = torch.cat([model.encode_prompts([""] * a.batch), model.encode_prompts([a.prompt] * a.batch)])
        x = torch.randn(2 * a.batch, model.unet.cfg["in_channels"], h, h, generator=g)
        flops = unet_flops(model.unet, x, torch.tensor(999), ctx)   # also the warm-up
        t_unet, _ = timed(lambda: model.unet(x, torch.tensor(999), ctx), a.repeat)
        print_unet(t_unet, 2 * a.batch, flops)
        if not a.no_img2img:
            t_denoise = []
            denoise = model.denoise

            def timed_denoise(*args, **kw):   # the denoising loop alone, inside img2img
                t0 = time.perf_counter()
                out = denoise(*args, **kw)
                t_denoise.append(time.perf_counter() - t0)
                return out
            model.denoise = timed_denoise
            t_clip, _ = timed(lambda: model.encode_prompts([""] * a.batch + [PROMPT] * a.batch), 1)
            t_enc, _ = timed(lambda: model.vae.encode(x_img), 1)
            t_dec, _ = timed(lambda: model.vae.decode(latent_noise), 1)
            t0 = time.perf_counter()
            out, info = model.img2img(x_img, [a.prompt] * a.batch, a.strength, a.steps, a.guidance, vae_noise,
                                      latent_noise, a.scheduler)
            t_all = time.perf_counter() - t0
            n_steps = len(info["timesteps"])
            print(f"torch clip_s {t_clip:.4f}")
            print(f"torch vae_encode_s {t_enc:.4f}")
            print(f"torch vae_decode_s {t_dec:.4f}")
            print(f"torch img2img_steps {len(info['timesteps'])}")
            print(f"torch img2img_s {t_all:.4f}")
            print(f"torch denoise_s {t_denoise[0]:.4f}")
            if n_steps:
                print(f"torch ms_per_item_step {1000 * t_denoise[0] / (n_steps * a.batch):.3f}")
            print(f"torch img2img_mean {out.mean().item():.6f}")
            if a.save:
                R.save_safetensors({"image": out.contiguous()}, os.path.join(a.save, "torch_out.safetensors"))
    print(f"torch peak_rss_mb {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f}")


def consistency(a):
    """The few-step path of an LCM-distilled model (the module's with scheduler=tcd): the guidance folded into the
    UNet's timestep_cond, so one UNet call per step at the batch B; its img2img's denoising loop (median of
    --repeat). The noise between steps is torch's (timing only: no output is compared)."""
    model = R.load_diffusers(a.model)
    dim = model.unet.cfg.get("time_cond_proj_dim")
    if not dim:
        sys.exit(f"bench_engine_ref: {a.model}: the UNet has no time_cond_proj_dim (not LCM-distilled)")
    size, lc, h = model_shape(model)
    g, vae_noise, latent_noise, _, x_img = inputs(a, size, lc, h)
    print(f"torch threads {a.threads}")
    print(f"torch version {torch.__version__}")
    with torch.no_grad():
        ctx = model.encode_prompts([a.prompt] * a.batch)
        w = R.guidance_scale_embedding(torch.tensor(a.guidance - 1).repeat(a.batch), dim)
        x = torch.randn(a.batch, model.unet.cfg["in_channels"], h, h, generator=g)
        flops = unet_flops(model.unet, x, torch.tensor(999), ctx, w)   # also the warm-up
        t_unet, _ = timed(lambda: model.unet(x, torch.tensor(999), ctx, timestep_cond=w), a.repeat)
        print_unet(t_unet, a.batch, flops)
        sched = R.TCD(model.sched_cfg, a.tcd_eta)
        sched.set_timesteps(a.steps, a.strength)
        ts = sched.timesteps
        mean, logvar = model.vae.encode(x_img)
        z0 = R.add_noise(sched.ac, model.vae.cfg["scaling_factor"] * model.vae.sample(mean, logvar, vae_noise),
                         latent_noise, ts[:1])

        def denoise():
            sched.set_timesteps(a.steps, a.strength)   # a fresh step index
            z = z0
            for t in ts:
                out = model.unet(z, t, ctx, timestep_cond=w)
                z, denoised = sched.step(out, t, z, torch.randn(z.shape, generator=g))
            return denoised
        t_denoise, denoised = timed(denoise, a.repeat)
        print(f"torch img2img_steps {len(ts)}")
        print(f"torch denoise_s {t_denoise:.4f}")
        print(f"torch ms_per_item_step {1000 * t_denoise / (len(ts) * a.batch):.3f}")
        print(f"torch img2img_mean {model.decode_image(denoised).mean().item():.6f}")


if __name__ == "__main__":
    main()
