#!/usr/bin/env python3
"""PyTorch side of the C-engine agreement check for a diffusers folder (scripts/judge_ldm.sh runs it).

Loads the folder into scripts/sd_ref.py's modules (F16 weights -> F32), writes into OUTDIR:
  src.png            a 32x32 8-bit RGB source (Fashion-MNIST test image 0, resized as the model's training data)
  noise.safetensors  vae_noise, latent_noise [B,latent_channels,h,w] (F32; what `genie ... -noise` takes)
  ref.safetensors    image [B,3,H,W] in [0,1]: img2img of src.png with PROMPT at strength R (rows use noise row k)
  txt2img.png        txt2img of PROMPT from latent_noise row 0, as 8-bit PNG
and, with --compare-png FILE, prints the max abs difference (in 8-bit levels) between FILE and txt2img.png.

usage: ldm_torch_check.py MODEL OUTDIR [--prompt P] [--r R] [--steps N] [--guidance G] [--batch B]
       ldm_torch_check.py --compare-png A.png B.png
"""
import os
import sys


import argparse
import struct
import zlib


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sd_ref as R  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402  (after sd_ref, which re-runs the script under python3-torch)
import train_fmnist_ldm as T  # noqa: E402


def read_png(path):
    """8-bit RGB/RGBA/gray PNG (non-interlaced, any filter) -> uint8 [H,W,C]."""
    with open(path, "rb") as f:
        raw = f.read()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n", path
    pos, idat = 8, b""
    while pos < len(raw):
        n, kind = struct.unpack(">I4s", raw[pos:pos + 8])
        data = raw[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            W, H, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", data)
            assert depth == 8 and interlace == 0, f"{path}: only 8-bit non-interlaced PNG"
        elif kind == b"IDAT":
            idat += data
        pos += 12 + n
    C = {0: 1, 2: 3, 6: 4}[ctype]
    buf = zlib.decompress(idat)
    stride = W * C
    out = np.zeros((H, stride), np.int32)
    prev = np.zeros(stride, np.int32)
    for y in range(H):
        ftype = buf[y * (stride + 1)]
        line = np.frombuffer(buf, np.uint8, stride, y * (stride + 1) + 1).astype(np.int32)
        cur = np.zeros(stride, np.int32)
        for x in range(stride):
            a = cur[x - C] if x >= C else 0
            b = prev[x]
            c = prev[x - C] if x >= C else 0
            if ftype == 0:
                p = 0
            elif ftype == 1:
                p = a
            elif ftype == 2:
                p = b
            elif ftype == 3:
                p = (a + b) // 2
            else:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                p = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            cur[x] = (line[x] + p) & 255
        out[y] = cur
        prev = cur
    return out.reshape(H, W, C).astype(np.uint8)


def to_u8(img):
    """[3,H,W] in [0,1] -> uint8 [H,W,3], rounded half to even as the engine's PNG writer."""
    return np.clip(np.round(img.permute(1, 2, 0).numpy() * 255), 0, 255).astype(np.uint8)


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--compare-png":
        a, b = read_png(sys.argv[2]).astype(int), read_png(sys.argv[3]).astype(int)
        print(f"max_abs_diff_8bit {np.abs(a[..., :3] - b[..., :3]).max()}")
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("outdir")
    ap.add_argument("--prompt", default="A photo of a bag")
    ap.add_argument("--r", type=float, default=0.8)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--guidance", type=float, default=7.5)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    torch.set_num_threads(2)
    os.makedirs(a.outdir, exist_ok=True)
    m = R.load_diffusers(a.model)
    S = m.vae.cfg["sample_size"]
    gray = T.read_idx("t10k-images-idx3-ubyte.gz")[:1]
    x8 = to_u8((T.to_model_images(gray)[0] + 1) / 2)
    R.write_png(os.path.join(a.outdir, "src.png"), x8)
    image = torch.from_numpy(x8.astype(np.float32) / 255 * 2 - 1).permute(2, 0, 1)[None].expand(a.batch, -1, -1, -1)
    g = torch.Generator().manual_seed(a.seed)
    f = S // 2 ** (len(m.vae.cfg["block_out_channels"]) - 1)
    lc = m.vae.cfg["latent_channels"]
    vae_noise = torch.randn((a.batch, lc, f, f), generator=g)
    latent_noise = torch.randn((a.batch, lc, f, f), generator=g)
    R.save_safetensors({"vae_noise": vae_noise, "latent_noise": latent_noise}, os.path.join(a.outdir, "noise.safetensors"))
    with torch.no_grad():
        img, _ = m.img2img(image, [a.prompt] * a.batch, a.r, a.steps, a.guidance, vae_noise, latent_noise, "ddim")
        R.save_safetensors({"image": img.contiguous()}, os.path.join(a.outdir, "ref.safetensors"))
        t2i, _ = m.txt2img([a.prompt], a.steps, a.guidance, latent_noise[:1], "ddim")
    R.write_png(os.path.join(a.outdir, "txt2img.png"), to_u8(t2i[0]))
    print(f"torch reference written to {a.outdir}")


if __name__ == "__main__":
    main()
