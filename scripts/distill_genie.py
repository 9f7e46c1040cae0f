#!/usr/bin/env python3
"""GeNIe-targeted distillation of the consistency-distilled student (issue 27): the student, sampled by TCD in
--n-steps steps at eta --eta, learns to give the teacher's GeNIe image for the same source, prompt, r and noise.

Why: the LCM-distilled student (scripts/distill_lcm.py) learns the teacher's probability-flow ODE everywhere, one
DDIM step at a time, and under TCD its GeNIe samples lift Few as the teacher's do but cost the head classes more
Many per point of Few (data/results/README.md, "Few-step GeNIe"). GeNIe only ever asks the student one question:
this source, noised to r in GeNIe-Ada's candidates, under "A photo of a T" at guidance 3. So the student is trained
on that question alone, with the answer the recipe itself gives: the teacher's img2img, 25 DPM-Solver++ steps with
CFG (StableDiffusionImg2ImgPipeline 0.19, scripts/sd_ref.py), from the same source latent and noise.

One pair: a Fashion-MNIST training image (any class) encoded by the teacher's VAE (posterior sample), a target
class T other than its own (GeNIe's pairs; T's prompt is the label name genie prompts with, "A photo of a tee"),
r from --r-set, latent noise eps. Teacher: add_noise(z0, eps, its first img2img timestep), 25 DPM-Solver++ steps
from there (int(25 r) of them), CFG --guidance. Student: add_noise(z0, eps, TCD's first timestep at strength r),
then --n-steps TCD steps (one UNet call each, the guidance embedding of --guidance), differentiated through all
of them. Loss: mean squared error between the two final latents; with --feature-loss W, plus W times the error of
the judge's last conv features (data/models/fmnist-judge.weights, cfg/fmnist.cfg's network) on the two decoded
images, relative to the teacher's feature energy: what the classifier tells the classes apart by, where the latent
error weighs every detail alike. With eta 0 the student's sampler is deterministic, so the regression is exact;
with eta > 0 the re-noising between steps uses fresh noise.

The targets are made once (--pairs of them, --holdout more for the check) and cached in OUT.targets.pt; the
training pairs of other such caches, made with another --seed, may join them (--more-targets; their held-out pairs
stay out, the check is always this run's own). Training starts from --init's UNet (the bundled student by
default), AdamW at --lr (constant, or annealed to 0 with --cosine), batch --batch, --steps steps, each batch one r.
The end: OUT as a diffusers folder (distill_lcm.write_folder: the teacher's VAE, text encoder and
tokenizer, this UNet in F16, an LCMScheduler config), and the held-out pairs' latent error against the teacher,
before and after, printed and written into OUT/training.json.

usage: scripts/distill_genie.py --out DIR [--init DIR] [--teacher DIR] [--pairs N] [--holdout N] [--steps N]
                                [--batch B] [--lr LR] [--cosine] [--n-steps K] [--eta E] [--r-set 0.7,0.8,0.9]
                                [--guidance G] [--threads T] [--seed S] [--more-targets A.targets.pt,...]
                                [--feature-loss W] [--judge darknet.weights]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import argparse  # noqa: E402
import struct  # noqa: E402
import time  # noqa: E402

import sd_ref as R  # noqa: E402
import torch  # noqa: E402  (after sd_ref, which re-runs the script under python3-torch)
import torch.nn.functional as F  # noqa: E402
import distill_lcm as L  # noqa: E402
import train_fmnist_ldm as T  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
TEACHER_STEPS = 25       # the recipe's DPM-Solver++ steps (cfg/fmnist-genie.cfg)
FIELDS = ("z0", "target", "ri", "eps", "tgt")   # a target cache's tensors, one row per pair


def label_prompts(teacher):
    """The prompt genie writes for each label of data/fmnist/labels.list, encoded: [10, 77, D], and the empty one."""
    with open(os.path.join(ROOT, "data", "fmnist", "labels.list")) as f:
        names = f.read().split()
    return teacher.encode_prompts([T.TEMPLATE.format(n) for n in names]), teacher.encode_prompts([""])


@torch.no_grad()
def teacher_genie(teacher, z0, eps, ctx_c, ctx_u, r, guidance):
    """StableDiffusionImg2ImgPipeline from latents: DPM-Solver++ TEACHER_STEPS at strength r, CFG."""
    sched = R.DPMSolverPP(teacher.sched_cfg)
    ts = R.SDModel.img2img_timesteps(sched, TEACHER_STEPS, r)
    x = R.add_noise(sched.ac, z0, eps, ts[0])
    ctx = torch.cat([ctx_u.expand(z0.shape[0], -1, -1), ctx_c])
    return teacher.denoise(sched, ts, x, ctx, guidance)


def student_genie(unet, sched_cfg, z0, eps, ctx_c, r, guidance, n_steps, eta, gen):
    """The engine's few-step GeNIe: TCD at strength r, n_steps UNet calls, the final sample (with gradients)."""
    return L.lcm_img2img(unet, z0, ctx_c, guidance, n_steps, r, eps, gen, sched_cfg, tcd_eta=eta)


class Judge(torch.nn.Module):
    """cfg/fmnist.cfg's network (three 3x3 conv + batch norm + leaky blocks, two 2x2 max pools, a connected layer)
    with a darknet .weights file's parameters, as darknet computes it (normalise by sqrt(var) + 1e-6). features()
    is the last conv block's output, [B, 128, 7, 7]: what the classifier tells the classes apart by."""

    SHAPES = ((3, 32), (32, 64), (64, 128))

    def __init__(self, path):
        super().__init__()
        with open(path, "rb") as f:
            raw = f.read()
        major, minor = struct.unpack("<2i", raw[:8])
        head = 20 if major * 10 + minor >= 2 else 16          # darknet writes "seen" as size_t from version 0.2
        v = torch.frombuffer(bytearray(raw[head:]), dtype=torch.float32)
        at, self.convs = 0, []

        def take(n):
            nonlocal at
            at += n
            return v[at - n:at].clone()
        for cin, cout in self.SHAPES:
            b, sc, m, var = take(cout), take(cout), take(cout), take(cout)
            self.convs.append((take(cout * cin * 9).view(cout, cin, 3, 3), b, sc, m, var.sqrt() + 1e-6))
        self.fc_b = take(10)
        self.fc_w = take(10 * 128 * 7 * 7).view(10, -1)
        if at != v.numel():
            sys.exit(f"{path}: {v.numel()} floats, cfg/fmnist.cfg's network has {at}")

    def features(self, x):
        for i, (w, b, sc, m, sd) in enumerate(self.convs):
            x = F.conv2d(x, w, padding=1)
            x = (x - m[:, None, None]) / sd[:, None, None] * sc[:, None, None] + b[:, None, None]
            x = F.leaky_relu(x, 0.1)
            if i < 2:
                x = F.max_pool2d(x, 2, 2)
        return x

    def forward(self, x):
        return self.features(x).flatten(1) @ self.fc_w.t() + self.fc_b


def judge_view(vae, z, sf):
    """Latents -> the judge's input: decoded, [0, 1], resized to 28x28 (the loader scales a 32x32 sample so too)."""
    img = (vae.decode(z / sf).clamp(-1, 1) + 1) / 2
    return F.interpolate(img, size=(28, 28), mode="bilinear", align_corners=False, antialias=True)


def make_pairs(n, mean, logvar, labels, r_set, gen):
    """n GeNIe pairs: (z0 [n,C,H,W], target [n], r index [n], eps [n,C,H,W])."""
    idx = torch.randint(0, mean.shape[0], (n,), generator=gen)
    z0 = R.AutoencoderKL.sample(mean[idx], logvar[idx], torch.randn(mean[idx].shape, generator=gen))
    shift = torch.randint(1, 10, (n,), generator=gen)            # any class but the source's
    target = (labels[idx] + shift) % 10
    ri = torch.randint(0, len(r_set), (n,), generator=gen)
    eps = torch.randn(z0.shape, generator=gen)
    return z0, target, ri, eps


@torch.no_grad()
def make_targets(teacher, z0, target, ri, eps, ctx_lab, ctx_u, r_set, guidance, log, chunk=256):
    out = torch.empty_like(z0)
    t0 = time.time()
    for k, r in enumerate(r_set):
        sel = (ri == k).nonzero().flatten()
        for i in range(0, len(sel), chunk):
            j = sel[i:i + chunk]
            out[j] = teacher_genie(teacher, z0[j], eps[j], ctx_lab[target[j]], ctx_u, r, guidance)
        log(f"teacher targets at r {r}: {len(sel)} in {time.time() - t0:.0f} s")
    return out


@torch.no_grad()
def held_out_error(unet, sched_cfg, hold, ctx_lab, r_set, args, gen):
    """Mean squared latent error against the teacher over the held-out pairs, per r and overall."""
    z0, target, ri, eps, tgt = hold
    errs, tot = {}, 0.0
    for k, r in enumerate(r_set):
        j = (ri == k).nonzero().flatten()
        if len(j) == 0:
            continue
        s = student_genie(unet, sched_cfg, z0[j], eps[j], ctx_lab[target[j]], r, args.guidance, args.n_steps,
                          args.eta, gen)
        e = F.mse_loss(s, tgt[j], reduction="sum").item()
        errs[str(r)] = e / tgt[j].numel()
        tot += e
    errs["all"] = tot / tgt.numel()
    return errs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--init", default=os.path.join(ROOT, "data", "models", "fmnist-lcm"))
    ap.add_argument("--teacher", default=L.TEACHER)
    ap.add_argument("--pairs", type=int, default=8192)
    ap.add_argument("--holdout", type=int, default=512)
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--cosine", action="store_true", help="anneal the learning rate to 0 over --steps (cosine)")
    ap.add_argument("--n-steps", type=int, default=2)
    ap.add_argument("--eta", type=float, default=0.0)
    ap.add_argument("--r-set", default="0.7,0.8,0.9")
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--feature-loss", type=float, default=0.0, metavar="W",
                    help="add W times the judge's feature error of the decoded images (relative to the teacher's)")
    ap.add_argument("--judge", default=os.path.join(ROOT, "data", "models", "fmnist-judge.weights"))
    ap.add_argument("--more-targets", default="",
                    help="other OUT.targets.pt files (made with another --seed) whose training pairs join these")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    r_set = [float(v) for v in args.r_set.split(",")]

    def log(msg):
        print(f"[distill_genie] {msg}", flush=True)

    teacher = R.load_diffusers(args.teacher)
    sf = teacher.vae.cfg["scaling_factor"]
    student = L.load_student(args.init)
    sched_cfg = L.lcm_scheduler_config(teacher.sched_cfg)
    ctx_lab, ctx_u = label_prompts(teacher)
    gen = torch.Generator().manual_seed(args.seed)

    cache = args.out + ".targets.pt"
    key = {"pairs": args.pairs, "holdout": args.holdout, "r_set": r_set, "guidance": args.guidance, "seed": args.seed}
    data = torch.load(cache) if os.path.exists(cache) else None
    if data is None or data["key"] != key:
        t0 = time.time()
        mean, logvar, labels = L.encode_train_set(teacher.vae)
        log(f"training set encoded: {tuple(mean.shape)} in {time.time() - t0:.0f} s")
        z0, target, ri, eps = make_pairs(args.pairs + args.holdout, mean, logvar, labels, r_set, gen)
        z0 = z0 * sf
        tgt = make_targets(teacher, z0, target, ri, eps, ctx_lab, ctx_u, r_set, args.guidance, log)
        data = {"key": key, "z0": z0, "target": target, "ri": ri, "eps": eps, "tgt": tgt, "gen": gen.get_state()}
        torch.save(data, cache + ".tmp")
        os.replace(cache + ".tmp", cache)
    gen.set_state(data["gen"])
    n = args.pairs
    train = [data[k][:n] for k in FIELDS]
    hold = [data[k][n:] for k in FIELDS]
    for path in filter(None, args.more_targets.split(",")):
        more = torch.load(path)
        mk = more["key"]
        if mk["r_set"] != r_set or mk["guidance"] != args.guidance or mk["seed"] == args.seed:
            sys.exit(f"{path}: its pairs were made with another r set or guidance, or with this --seed")
        m = mk["pairs"]
        train = [torch.cat([t, more[k][:m]]) for t, k in zip(train, FIELDS)]
        log(f"{path}: {m} more training pairs, {len(train[0])} in all")

    student.eval()
    before = held_out_error(student, sched_cfg, hold, ctx_lab, r_set, args, gen)
    log(f"held-out latent MSE against the teacher before: {before}")
    student.train()
    opt = torch.optim.AdamW(student.parameters(), lr=args.lr, weight_decay=0.0)
    # a constant rate leaves a noisy last iterate (the held-out error can rise while the training loss falls)
    lr_sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(args.steps, 1)) if args.cosine else None
    pools = [(train[2] == k).nonzero().flatten() for k in range(len(r_set))]   # the training pairs of each r
    judge = None
    if args.feature_loss > 0:
        judge = Judge(args.judge)
        teacher.vae.requires_grad_(False)
    t_start, loss_sum, feat_sum = time.time(), 0.0, 0.0
    for step in range(args.steps):
        k = step % len(r_set)
        j = pools[k][torch.randint(0, len(pools[k]), (args.batch,), generator=gen)]
        s = student_genie(student, sched_cfg, train[0][j], train[3][j], ctx_lab[train[1][j]], r_set[k], args.guidance,
                          args.n_steps, args.eta, gen)
        loss = lat = F.mse_loss(s, train[4][j])
        if judge is not None:
            with torch.no_grad():
                ft = judge.features(judge_view(teacher.vae, train[4][j], sf))
            fe = F.mse_loss(judge.features(judge_view(teacher.vae, s, sf)), ft) / ft.pow(2).mean()
            feat_sum += fe.item()
            loss = loss + args.feature_loss * fe
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        if lr_sched:
            lr_sched.step()
        loss_sum += lat.item()
        if (step + 1) % 50 == 0:
            per_step = (time.time() - t_start) / (step + 1)
            fe = f" (judge features {feat_sum / 50:.4f})" if judge is not None else ""
            log(f"step {step + 1}/{args.steps} loss {loss_sum / 50:.5f}{fe} {per_step:.2f} s/step")
            loss_sum = feat_sum = 0.0
    student.eval()
    R.round_weights(student, torch.float16)
    after = held_out_error(student, sched_cfg, hold, ctx_lab, r_set, args, gen)
    log(f"held-out latent MSE against the teacher after (F16 weights): {after}")
    info = {"method": "GeNIe-targeted distillation: TCD img2img of the student regressed on the teacher's "
                      "DPM-Solver++ img2img from the same source latent and noise (scripts/distill_genie.py)",
            "init": os.path.relpath(os.path.abspath(args.init), os.path.abspath(ROOT)),
            "teacher": os.path.relpath(os.path.abspath(args.teacher), os.path.abspath(ROOT)),
            "teacher_sampler": f"dpmpp2m {TEACHER_STEPS} steps, CFG {args.guidance}", "pairs": len(train[0]),
            "holdout": args.holdout, "r_set": r_set, "student_sampler": f"tcd {args.n_steps} steps eta {args.eta}",
            "steps": args.steps, "batch": args.batch, "lr": args.lr,
            "lr_schedule": "cosine to 0" if args.cosine else "constant", "optimizer": "AdamW, weight decay 0",
            "grad_clip": 1.0, "seed": args.seed, "threads": args.threads, "feature_loss": args.feature_loss,
            "heldout_mse_before": before, "heldout_mse_after": after, "wall_s": round(time.time() - t_start, 1)}
    L.write_folder(args.out, args.teacher, student, info)
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
