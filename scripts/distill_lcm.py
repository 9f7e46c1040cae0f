#!/usr/bin/env python3
"""Latent consistency distillation of the bundled Fashion-MNIST model (issue 27): a UNet that does GeNIe img2img in
2-8 steps with ONE UNet call per step, classifier-free guidance folded in.

Method: Luo et al. 2023, "Latent Consistency Models", Algorithm 1 (latent consistency distillation), written from
reading diffusers' examples/consistency_distillation/train_lcm_distill_sd_wds.py (huggingface/diffusers at commit
00f354d14d00ed60cfce2ea7c5efceca2e4c4c3f, the script that requires diffusers 0.33.0.dev0), its LCMScheduler
(src/diffusers/schedulers/scheduling_lcm.py at 013e60c172a5c6674c3d1473d13d38305c4d6a1a) and
LatentConsistencyModelImg2ImgPipeline (pipeline_latent_consistency_img2img.py at 031aab366c80). Plain torch on
scripts/sd_ref.py's modules; no diffusers needed.

One training step (batch --batch):
  z0     latents of Fashion-MNIST training images from the teacher's VAE (posterior sample x scaling_factor, as the
         teacher was trained); prompt "A photo of a <name>" with a random name of the image's class (the names and
         synonyms the teacher was trained on, train_fmnist_ldm.py); no empty prompts (GeNIe always prompts a class,
         and diffusers' script distils with proportion_empty_prompts 0).
  n      uniform in 0..49 on the 50-step skipping schedule t_n = 20 (n + 1) - 1 (k = 20 of 1000, DDIMSolver's);
         z_{t_n} = add_noise(z0, eps, t_n); the target end point s = max(t_n - 20, 0).
  g      guidance uniform in [--g-min, --g-max] = [1, 5] (the Imagen/genie form eps_u + g (eps_c - eps_u)): GeNIe runs
         at 3, the guidance sweeps of the experiment log at 2..4, CAS is best at 2, so [1, 5] has 3 in its middle
         and spends none of a 3.9M-parameter UNet's capacity on the 7.5+ that genie never uses for GeNIe.
  student  f(z, t, g) = c_skip(t) z + c_out(t) x0(eps_theta(z, t, c, emb(g - 1)), z, t), boundary scalings of
         LCMScheduler (sigma_data 0.5, timestep_scaling 10: c_skip(0) = 1, c_out(0) = 0).
  teacher  one DDIM step from t_n to s on the teacher's CFG estimate at g (cond and uncond in one batch of 2B).
  target   f_{theta-}(z_s, s, g) with the EMA target network theta- (decay --ema 0.95, diffusers' default).
  loss   L2 (mean squared error) between student and target: the targets are noise-free teacher ODE steps, so
         there are no outliers for a Huber loss to cut; the teacher itself was trained on MSE; and diffusers' pseudo-
         Huber with its c = 0.001 is plain L1 on latents of unit scale, whose gradient keeps its size as the error
         shrinks. --loss huber is there to try it.
  update AdamW (no weight decay: it would pull the teacher's weights toward zero), --lr 2e-4 after a 100-step
         linear warm-up, then constant (diffusers' constant schedule, its 1e-4 doubled: a CPU run has a few thousand
         steps, not tens of thousands, and this UNet was trained at peaks of 1e-3 and 3e-4), gradient clipping 1.0;
         then the EMA target update.

The student is the teacher's UNet (its F16 weights, in F32) plus diffusers' TimestepEmbedding cond_proj: a bias-free
Linear(time_cond_proj_dim -> block_out_channels[0]) initialised to zero (so the student starts as the teacher),
added to the sinusoidal timestep embedding before linear_1 (state_dict key time_embedding.cond_proj.weight),
fed LatentConsistencyModelPipeline.get_guidance_scale_embedding(g - 1). time_cond_proj_dim is 64 (SD 1.5 LCMs:
256 for a 320-wide UNet): the width of the sinusoidal timestep features it is added to, which is also plenty to
tell guidances in [1, 5] apart (the embedding's periods run from 6 to 60000 in units of (g - 1) x 1000).

Output: a diffusers folder OUT (the teacher's vae/, text_encoder/, tokenizer/ copied unchanged; unet/ with
"time_cond_proj_dim" in its config and the EMA target's weights in F16, as the teacher is stored; scheduler/ an
LCMScheduler config with SD 1.5's betas, original_inference_steps 50, timestep_scaling 10), written every
--snapshot-every steps and at the end (a partial run is usable), plus OUT.train_state.pt beside it (F32 online and
target UNets, optimizer, step, RNG state; not part of the model): --init OUT continues from it to --steps in total,
bit for bit the run that was not interrupted (same --threads). --init DIR of a folder without that state starts
the student and target from DIR's UNet.

--eval DIR: LCM img2img (LCMScheduler timesteps from the 50-step schedule cut at the strength, x0 through the
boundary scalings, fresh noise between steps, the last step's denoised latents as the result) of the student at
2, 4, 8 steps against the teacher's 25-step DPM-Solver++ (what the C engine runs; 20 of them run at r 0.8) and
DDIM with CFG 3, and the teacher's DPM-Solver++ run for 2, 4, 8 steps as the baseline, on the first
two Fashion-MNIST test images of the source classes of four GeNIe pairs (sandal->sneaker, tee->dress, bag->boot,
trouser->coat) at r 0.8, sources encoded with the posterior mean as GeNIe does, all runs from the same noise. Prints
the mean absolute differences of the final latents (and of the images) against the teacher; writes a PNG strip
(rows: sources; columns: source, teacher DPM 25, teacher DDIM 25, teacher DPM run for 4 steps (as many UNet calls
as student 8), student 2, 4, 8). Training ends with this evaluation.

Deterministic for a seed at a fixed thread count. Run with Debian's /usr/bin/python3 (python3-torch 1.13, CPU).

usage: scripts/distill_lcm.py [--out DIR] [--teacher DIR] [--steps N] [--batch B] [--lr LR] [--threads T] [--seed S]
                              [--snapshot-every N] [--init DIR] [--g-min G --g-max G] [--loss l2|huber]
       scripts/distill_lcm.py --eval DIR [--teacher DIR] [--r R] [--guidance G] [--png FILE] [--threads T]
"""
import os
import sys


import argparse
import copy
import json
import shutil
import time


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sd_ref as R  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402  (after sd_ref, which re-runs the script under python3-torch)
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import train_fmnist_ldm as T  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
TEACHER = os.path.join(ROOT, "data", "models", "fmnist-ldm")
ORIGINAL_STEPS = 50          # the skipping schedule: k = 1000 / 50 = 20
TIMESTEP_SCALING = 10.0
COND_DIM = 64                # time_cond_proj_dim (see the docstring)
WARMUP = 100
# GeNIe pairs of the model card (source class, target class), label indices of data/fmnist/labels.list
EVAL_PAIRS = [(5, 7), (0, 3), (8, 9), (1, 4)]


# ---------------------------------------------------------------------------------------------------------
# The student: sd_ref's UNet with diffusers' TimestepEmbedding cond_proj
# ---------------------------------------------------------------------------------------------------------

def student_from_teacher(teacher_unet, cond_dim):
    s = R.UNet2DConditionModel(dict(teacher_unet.cfg, time_cond_proj_dim=cond_dim))
    nn.init.zeros_(s.time_embedding.cond_proj.weight)   # the student starts as the teacher
    missing, unexpected = s.load_state_dict(teacher_unet.state_dict(), strict=False)
    assert missing == ["time_embedding.cond_proj.weight"] and not unexpected, (missing, unexpected)
    return s


def load_student(folder):
    with open(os.path.join(folder, "unet", "config.json")) as f:
        cfg = json.load(f)
    assert cfg.get("time_cond_proj_dim"), f"{folder}/unet/config.json has no time_cond_proj_dim"
    s = R.UNet2DConditionModel(cfg)
    sd = R.load_safetensors(os.path.join(folder, "unet", "diffusion_pytorch_model.safetensors"))
    s.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
    return s.eval()


# ---------------------------------------------------------------------------------------------------------
# LCM pieces (diffusers semantics)
# ---------------------------------------------------------------------------------------------------------

def bcast(v):
    return v.reshape(-1, 1, 1, 1)


def consistency_fn(unet, x, t, ctx, wemb, sched):
    """f(x, t) = c_skip x + c_out x0, x0 from the UNet's epsilon; sched is the reference's LCMScheduler (its
    alphas and boundary scalings)."""
    a = bcast(sched.ac[t])
    x0 = (x - (1 - a).sqrt() * unet(x, t, ctx, timestep_cond=wemb)) / a.sqrt()
    c_skip, c_out = sched.scalings(t.float())
    return bcast(c_skip) * x + bcast(c_out) * x0


def lcm_img2img(unet, z0, ctx, guidance, n, strength, latent_noise, gen, sched_cfg, tcd_eta=None):
    """LatentConsistencyModelImg2ImgPipeline on given latents z0, through the reference's LCMScheduler (its
    timesteps for n and strength, the boundary scalings, fresh noise between steps): the last denoised latents.
    tcd_eta: TCDScheduler with that eta instead (the same pipeline). Differentiable: callers that only evaluate
    run it under torch.no_grad."""
    sched = R.LCM(sched_cfg) if tcd_eta is None else R.TCD(sched_cfg, tcd_eta)
    sched.set_timesteps(n, strength)
    wemb = R.guidance_scale_embedding(torch.full((z0.shape[0],), guidance - 1.0), unet.cfg["time_cond_proj_dim"])
    x = R.add_noise(sched.ac, z0, latent_noise, sched.timesteps[:1])
    for t in sched.timesteps:
        x, den = sched.step(unet(x, t, ctx, timestep_cond=wemb), t, x, torch.randn(x.shape, generator=gen))
    return den


# ---------------------------------------------------------------------------------------------------------
# Writing the folder
# ---------------------------------------------------------------------------------------------------------

def lcm_scheduler_config(teacher_cfg):
    cfg = {k: v for k, v in teacher_cfg.items() if k not in ("skip_prk_steps",)}   # PNDM-only
    cfg.update({"_class_name": "LCMScheduler", "_diffusers_version": "0.22.0", "original_inference_steps": ORIGINAL_STEPS,
                "timestep_scaling": TIMESTEP_SCALING, "prediction_type": "epsilon", "timestep_spacing": "leading",
                "clip_sample": False, "clip_sample_range": 1.0, "thresholding": False,
                "dynamic_thresholding_ratio": 0.995, "sample_max_value": 1.0, "rescale_betas_zero_snr": False})
    return cfg


def write_folder(out, teacher_dir, unet, training):
    """OUT as a complete diffusers folder, built under OUT.tmp and swapped in, so OUT is always whole."""
    tmp, old = out + ".tmp", out + ".old"
    for d in (tmp, old):
        shutil.rmtree(d, ignore_errors=True)
    os.makedirs(os.path.join(tmp, "unet"))
    os.makedirs(os.path.join(tmp, "scheduler"))
    for sub in ("vae", "text_encoder", "tokenizer"):
        shutil.copytree(os.path.join(teacher_dir, sub), os.path.join(tmp, sub))
    with open(os.path.join(teacher_dir, "model_index.json")) as f:
        index = json.load(f)
    index.update({"_class_name": "LatentConsistencyModelPipeline", "_diffusers_version": "0.22.0",
                  "scheduler": ["diffusers", "LCMScheduler"]})
    R.write_json(os.path.join(tmp, "model_index.json"), index)
    with open(os.path.join(teacher_dir, "scheduler", "scheduler_config.json")) as f:
        R.write_json(os.path.join(tmp, "scheduler", "scheduler_config.json"), lcm_scheduler_config(json.load(f)))
    R.write_json(os.path.join(tmp, "unet", "config.json"), unet.cfg)
    R.save_safetensors({k: v.detach().to(torch.float16) for k, v in unet.state_dict().items()},
                       os.path.join(tmp, "unet", "diffusion_pytorch_model.safetensors"))
    R.write_json(os.path.join(tmp, "training.json"), training)
    if os.path.exists(out):
        os.rename(out, old)
    os.rename(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------

@torch.no_grad()
def encode_train_set(vae):
    """Posterior means and log-variances of the 60000 training images through the teacher's VAE."""
    gray = T.read_idx("train-images-idx3-ubyte.gz")
    means, logvars = [], []
    for i in range(0, gray.shape[0], 5000):
        m, lv = T.encode_all(vae, T.to_model_images(gray[i:i + 5000]))
        means.append(m)
        logvars.append(lv)
    labels = torch.from_numpy(T.read_idx("train-labels-idx1-ubyte.gz").astype(np.int64))
    return torch.cat(means), torch.cat(logvars), labels


def distill(args, log):
    teacher = R.load_diffusers(args.teacher)
    tunet = teacher.unet.eval().requires_grad_(False)
    sf = teacher.vae.cfg["scaling_factor"]
    sched = R.LCM(lcm_scheduler_config(teacher.sched_cfg))   # the student's scheduler: its alphas and scalings
    ac = sched.ac
    k = teacher.sched_cfg["num_train_timesteps"] // ORIGINAL_STEPS
    ddim_ts = torch.arange(1, ORIGINAL_STEPS + 1, dtype=torch.int64) * k - 1     # 19, 39, ..., 999

    t0 = time.time()
    mean, logvar, labels = encode_train_set(teacher.vae)
    log(f"training set encoded by the teacher's VAE: {tuple(mean.shape)} in {time.time() - t0:.0f} s")
    texts, tcls = T.all_prompts()
    by_class = [[i for i, c in enumerate(tcls) if c == j] for j in range(len(T.CLASS_NAMES))]
    ctx_all = teacher.encode_prompts(texts)          # the frozen text encoder once: [P, 77, D], row 0 is ""

    state_path = (args.init or args.out) + ".train_state.pt"
    state = torch.load(state_path) if args.init and os.path.exists(state_path) else None
    if args.init and state is None:
        student = load_student(args.init)
    else:
        student = student_from_teacher(tunet, COND_DIM)
    target = copy.deepcopy(student).requires_grad_(False)
    opt = torch.optim.AdamW(student.parameters(), lr=args.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(args.seed)
    step0, wall0 = 0, 0.0
    if state is not None:
        student.load_state_dict(state["student"])
        target.load_state_dict(state["target"])
        opt.load_state_dict(state["opt"])
        gen.set_state(state["gen"])
        step0, wall0 = state["step"], state["wall_s"]
        assert state["args"]["seed"] == args.seed and state["args"]["batch"] == args.batch, "resume with the same seed and batch"
        log(f"continuing from {state_path} at step {step0}")
    elif args.init:
        log(f"student and target start from {args.init}'s UNet")
    student.train()
    target.train()
    cond_dim = student.cfg["time_cond_proj_dim"]
    B, n_img = args.batch, mean.shape[0]
    log(f"student: {sum(p.numel() for p in student.parameters())} parameters, time_cond_proj_dim {cond_dim}; "
        f"steps {step0}..{args.steps}, batch {B}, lr {args.lr}, g in [{args.g_min}, {args.g_max}], loss {args.loss}")

    def training_info(step):
        return {"method": "latent consistency distillation (Luo et al. 2023, Algorithm 1)",
                "teacher": os.path.relpath(os.path.abspath(args.teacher), os.path.abspath(ROOT)),
                "steps": step, "batch": B, "lr": args.lr, "warmup": WARMUP, "optimizer": "AdamW, weight decay 0",
                "grad_clip": 1.0, "ema_target": args.ema, "loss": args.loss, "huber_c": args.huber_c,
                "guidance_range": [args.g_min, args.g_max], "guidance_embedding": "g - 1",
                "time_cond_proj_dim": cond_dim, "solver": "DDIM", "original_inference_steps": ORIGINAL_STEPS,
                "timestep_scaling": TIMESTEP_SCALING, "prompts": T.TEMPLATE, "class_names": T.CLASS_NAMES,
                "saved": "EMA target network, F16", "seed": args.seed, "threads": torch.get_num_threads(),
                "wall_s": round(wall0 + time.time() - t_start, 1)}

    def snapshot(step):
        tgt = copy.deepcopy(target)
        R.round_weights(tgt, torch.float16)
        write_folder(args.out, args.teacher, tgt, training_info(step))
        torch.save({"student": student.state_dict(), "target": target.state_dict(), "opt": opt.state_dict(),
                    "gen": gen.get_state(), "step": step, "wall_s": wall0 + time.time() - t_start,
                    "args": vars(args)}, args.out + ".train_state.pt.tmp")
        os.replace(args.out + ".train_state.pt.tmp", args.out + ".train_state.pt")
        log(f"wrote {args.out} (step {step})")

    t_start, t_last, cpu_last, loss_sum = time.time(), time.time(), time.process_time(), 0.0
    for step in range(step0, args.steps):
        for grp in opt.param_groups:
            grp["lr"] = args.lr * min(1.0, (step + 1) / WARMUP)
        idx = torch.randint(0, n_img, (B,), generator=gen)
        z0 = sf * R.AutoencoderKL.sample(mean[idx], logvar[idx], torch.randn(mean[idx].shape, generator=gen))
        choice = torch.randint(0, 1 << 30, (B,), generator=gen)
        rows = [by_class[int(labels[i])][int(c) % len(by_class[int(labels[i])])] for i, c in zip(idx, choice)]
        ctx = ctx_all[torch.tensor(rows)]
        n = torch.randint(0, ORIGINAL_STEPS, (B,), generator=gen)
        t = ddim_ts[n]
        s = (t - k).clamp(min=0)
        eps = torch.randn(z0.shape, generator=gen)
        x = bcast(ac[t]).sqrt() * z0 + bcast(1 - ac[t]).sqrt() * eps
        g = args.g_min + (args.g_max - args.g_min) * torch.rand(B, generator=gen)
        wemb = R.guidance_scale_embedding(g - 1.0, cond_dim)

        pred = consistency_fn(student, x, t, ctx, wemb, sched)
        with torch.no_grad():
            e = tunet(torch.cat([x, x]), torch.cat([t, t]), torch.cat([ctx_all[:1].expand(B, -1, -1), ctx]))
            eu, ec = e.chunk(2)
            eg = eu + bcast(g) * (ec - eu)
            a_t, a_s = bcast(ac[t]), bcast(ac[s])
            x0 = (x - (1 - a_t).sqrt() * eg) / a_t.sqrt()
            x_s = a_s.sqrt() * x0 + (1 - a_s).sqrt() * eg           # the DDIM step t -> s
            tgt = consistency_fn(target, x_s, s, ctx, wemb, sched)
        if args.loss == "l2":
            loss = F.mse_loss(pred, tgt)
        else:
            loss = (((pred - tgt) ** 2 + args.huber_c ** 2).sqrt() - args.huber_c).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        T.ema_update(target, student, args.ema)
        loss_sum += loss.item()
        done = step + 1
        if done % 25 == 0 or done == args.steps:
            n_log = 25 if done % 25 == 0 else done % 25
            now, cpu = time.time(), time.process_time()
            log(f"step {done}/{args.steps} loss {loss_sum / n_log:.5f} {(now - t_last) / n_log:.2f} s/step "
                f"({(cpu - cpu_last) / n_log:.2f} s CPU)")
            t_last, cpu_last, loss_sum = now, cpu, 0.0
        if args.snapshot_every and done % args.snapshot_every == 0 and done < args.steps:
            snapshot(done)
    snapshot(args.steps)


# ---------------------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------------------

def tile(img, scale=2):
    """[3,H,W] in [0,1] -> uint8 [H*scale, W*scale, 3], nearest."""
    a = np.clip(np.round(img.permute(1, 2, 0).numpy() * 255), 0, 255).astype(np.uint8)
    return a.repeat(scale, 0).repeat(scale, 1)


@torch.no_grad()
def evaluate(folder, args, log):
    teacher = R.load_diffusers(args.teacher)
    student = load_student(folder)
    tok_dir = os.path.join(folder, "tokenizer")
    assert all(open(os.path.join(tok_dir, f), "rb").read() == open(os.path.join(args.teacher, "tokenizer", f), "rb").read()
               for f in ("vocab.json", "merges.txt")), "the student's tokenizer is not the teacher's"
    ac, _ = R.alphas_cumprod(teacher.sched_cfg)
    gray = T.read_idx("t10k-images-idx3-ubyte.gz")
    lab = T.read_idx("t10k-labels-idx1-ubyte.gz")
    src_idx, prompts = [], []
    for s, tcls in EVAL_PAIRS:
        for i in np.nonzero(lab == s)[0][:2]:
            src_idx.append(int(i))
            prompts.append(T.TEMPLATE.format(T.CLASS_NAMES[tcls][0]))
    images = T.to_model_images(gray[src_idx])
    B = images.shape[0]
    z0 = teacher.vae.cfg["scaling_factor"] * teacher.vae.encode(images)[0]
    latent_noise = torch.randn(z0.shape, generator=torch.Generator().manual_seed(args.seed))
    vae_noise = torch.zeros_like(latent_noise)        # posterior mean, as GeNIe encodes its sources
    ctx = teacher.encode_prompts(prompts)

    def teacher_run(kind, n):
        """The teacher's img2img with n scheduler steps (int(n r) of them run, 2 UNet calls each)."""
        trace = []
        img, _ = teacher.img2img(images, prompts, args.r, n, args.guidance, vae_noise, latent_noise, kind, trace)
        return trace[-1], img, len(trace)

    ref, ref_img, ref_n = teacher_run("dpm", 25)
    ddim, ddim_img, _ = teacher_run("ddim", 25)
    columns = [images / 2 + 0.5, ref_img, ddim_img]
    log(f"eval: {B} sources (test images {src_idx}), r {args.r}, guidance {args.guidance}; mean |difference| of the "
        f"final latents against the teacher's 25-step DPM-Solver++ ({ref_n} steps run, {2 * ref_n} UNet calls; "
        f"in brackets: against its DDIM 25), and of the images in [0, 1]")
    log(f"  teacher DDIM 25           latents {(ddim - ref).abs().mean():.4f}           images "
        f"{(ddim_img - ref_img).abs().mean():.4f}")
    results = {}
    for n in (2, 4, 8):
        N = next(m for m in range(n, 10 * n) if int(m * args.r) >= n)    # a schedule that runs n steps at r
        lat, img, ran = teacher_run("dpm", N)
        log(f"  teacher DPM {N:2d} ({ran} run)   latents {(lat - ref).abs().mean():.4f} ({(lat - ddim).abs().mean():.4f})"
            f"  images {(img - ref_img).abs().mean():.4f}   [{2 * ran} UNet calls]")
        if n == 4:
            columns.append(img)
    for n in (2, 4, 8):
        lat = lcm_img2img(student, z0, ctx, args.guidance, n, args.r, latent_noise,
                          torch.Generator().manual_seed(args.seed + n), lcm_scheduler_config(teacher.sched_cfg))
        img = teacher.decode_image(lat)
        results[n] = float((lat - ref).abs().mean())
        log(f"  student LCM {n}             latents {results[n]:.4f} ({(lat - ddim).abs().mean():.4f})"
            f"  images {(img - ref_img).abs().mean():.4f}   [{n} UNet calls]")
        columns.append(img)
    gap = 2
    H = columns[0].shape[2] * 2
    rows = []
    for b in range(B):
        row = []
        for c in columns:
            row += [tile(c[b]), np.full((H, gap, 3), 255, np.uint8)]
        rows += [np.concatenate(row[:-1], 1), np.full((gap, len(columns) * (H + gap) - gap, 3), 255, np.uint8)]
    png = args.png or folder.rstrip("/") + "-eval.png"
    R.write_png(png, np.ascontiguousarray(np.concatenate(rows[:-1], 0)))
    log(f"  strip {png}: rows = sources; columns = source, teacher DPM 25, teacher DDIM 25, teacher DPM "
        f"4 steps run, student LCM 2, 4, 8")
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "fmnist-lcm"))
    ap.add_argument("--teacher", default=TEACHER)
    ap.add_argument("--steps", type=int, default=2000, help="total distillation steps (with --init: including its)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--ema", type=float, default=0.95, help="EMA decay of the target network")
    ap.add_argument("--g-min", type=float, default=1.0)
    ap.add_argument("--g-max", type=float, default=5.0)
    ap.add_argument("--loss", choices=("l2", "huber"), default="l2")
    ap.add_argument("--huber-c", type=float, default=0.001)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (one is fastest on a busy 2-core machine)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--snapshot-every", type=int, default=0, help="write OUT (and its train state) every N steps")
    ap.add_argument("--init", help="continue from this folder (exactly, where DIR.train_state.pt exists)")
    ap.add_argument("--eval", metavar="DIR", help="only evaluate the LCM folder DIR against the teacher")
    ap.add_argument("--r", type=float, default=0.8, help="eval: img2img strength")
    ap.add_argument("--guidance", type=float, default=3.0, help="eval: guidance of teacher and student")
    ap.add_argument("--png", help="eval: the strip's path (default DIR-eval.png)")
    args = ap.parse_args()
    for k in ("out", "init", "eval", "teacher"):
        if getattr(args, k):
            setattr(args, k, getattr(args, k).rstrip("/"))     # OUT.train_state.pt sits beside the folder
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    t_start = time.time()

    def log(s):
        print(f"[{time.time() - t_start:7.1f} s] {s}", flush=True)

    if args.eval:
        evaluate(args.eval, args, log)
        return
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    distill(args, log)
    evaluate(args.out, args, log)


if __name__ == "__main__":
    main()
