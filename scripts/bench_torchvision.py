#!/usr/bin/env python3
"""torchvision's DataLoader on a list of JPEGs, as a peer for genie's loader at ImageNet sizes:
RandomResizedCrop(size) + horizontal flip + ColorJitter(0.4, 0.4, 0.4, 0.1) + ToTensor, `workers` worker processes,
batches of `batch`; prints "torchvision <img/s> img/s". Used by scripts/bench.sh when torchvision is installed."""
import argparse
import time

import torch
import torchvision.transforms as T
from PIL import Image


class Files(torch.utils.data.Dataset):
    def __init__(self, paths, tf):
        self.paths, self.tf = paths, tf

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        with Image.open(self.paths[i]) as im:
            return self.tf(im.convert("RGB"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("list")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--batches", type=int, default=16)
    a = ap.parse_args()
    torch.set_num_threads(1)
    paths = [l.strip() for l in open(a.list) if l.strip()]
    tf = T.Compose([T.RandomResizedCrop(a.size), T.RandomHorizontalFlip(), T.ColorJitter(0.4, 0.4, 0.4, 0.1),
                    T.ToTensor()])
    dl = torch.utils.data.DataLoader(Files(paths, tf), batch_size=a.batch, shuffle=True, num_workers=a.workers,
                                     drop_last=True)
    it = iter(dl)
    next(it)  # workers started, first batch out of the way
    t0, n = time.time(), 0
    for _ in range(a.batches):
        try:
            b = next(it)
        except StopIteration:
            it = iter(dl)
            b = next(it)
        n += b.shape[0]
    print(f"torchvision {n / (time.time() - t0):.1f} img/s")


if __name__ == "__main__":
    main()
