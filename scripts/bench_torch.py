"""PyTorch CPU training speed of the network in cfg/fmnist.cfg, for scripts/bench.sh.

The same layers as the darknet cfg: 3x3 convolutions without bias followed by batch norm and leaky ReLU (0.1),
2x2 max pools, a fully connected layer to the class scores, softmax cross-entropy, SGD with momentum and weight
decay. Random inputs: this times the training step only, not data loading.
Prints one line "torch: <img/s> img/s".
"""
import argparse
import time

import torch
import torch.nn as nn


def block(cin, cout):
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.1)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=40, help="timed training steps")
    ap.add_argument("--skip", type=int, default=5, help="untimed warm-up steps")
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads (0: torch's default)")
    ap.add_argument("--batch", type=int, default=128)
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    net = nn.Sequential(*block(3, 32), nn.MaxPool2d(2, 2), *block(32, 64), nn.MaxPool2d(2, 2), *block(64, 128),
                        nn.Flatten(), nn.Linear(128 * 7 * 7, 10))
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=0.0005)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.rand(args.batch, 3, 28, 28)
    y = torch.randint(0, 10, (args.batch,))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    net.train()
    for _ in range(args.skip):
        step()
    t = time.perf_counter()
    for _ in range(args.iters):
        step()
    t = time.perf_counter() - t
    print(f"torch: {args.iters * args.batch / t:.1f} img/s ({torch.get_num_threads()} threads, "
          f"{1000 * t / args.iters:.1f} ms/iter)")


if __name__ == "__main__":
    main()
