#!/usr/bin/env python3
"""Writes the model of `make bench-gpu`: a diffusers folder with Stable Diffusion 1.5's shapes (UNet 320-640-1280-1280,
VAE 128-256-512-512, CLIP ViT-L/14 text encoder, 512x512) and seeded random weights, stored in F16 (~2 GB), plus
the 512x512 source image and the prompt (bench.json). The speed of the engine does not depend on the weights'
values; scripts/sd_ref.py builds the networks and writes the folder, scripts/bench_engine_ref.py the image.

  python3 scripts/bench_gpu_model.py --out DIR [--seed S]
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sd_ref as R  # noqa: E402
import bench_engine_ref as B  # noqa: E402
import torch  # noqa: E402  (after sd_ref, which re-runs the script under python3-torch)

SIZE = 512


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    merges = R.learn_bpe([B.PROMPT], 100)
    vocab = R.build_vocab(merges)
    CA, D, U, CAU = B.CA, B.D, B.U, B.CAU
    ucfg = R.unet_config((320, 640, 1280, 1280), [CA, CA, CA, D], [U, CAU, CAU, CAU], 2, 8, 768, False,
                         sample_size=SIZE // 8)
    vcfg = R.vae_config((128, 256, 512, 512), 2, sample_size=SIZE)
    ccfg = R.clip_config(768, 12, 12, 3072, len(vocab))
    with torch.no_grad():
        model = R.SDModel(R.CLIPTokenizer(vocab, merges), R.CLIPTextModel(ccfg), R.UNet2DConditionModel(ucfg),
                          R.AutoencoderKL(vcfg))
    R.write_diffusers(a.out, model, ucfg, vcfg, ccfg, merges, torch.float16)
    R.write_png(os.path.join(a.out, "image.png"), B.image(SIZE))
    R.write_json(os.path.join(a.out, "bench.json"), {"prompt": B.PROMPT, "image": "image.png", "size": SIZE})
    n = sum(p.numel() for m in (model.unet, model.vae, model.clip) for p in m.parameters())
    print("bench-gpu model: %s, %.0f M parameters in F16" % (a.out, n / 1e6))


if __name__ == "__main__":
    main()
