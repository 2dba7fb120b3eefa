"""cache-dit's tiled-VAE relay on gloo: does every rank receive rank 0's result? (docs/matrix.md, "vae_patch above 2")

cache-dit 1.5.3's data-parallel tiled encode/decode (cache_dit/distributed/autoencoders/autoencoder_kl_*.py) ends by
handing rank 0's blended result down a chain: rank r receives from r-1 and sends to r+1, both queued on one
TileBatchedP2PComm and committed in one batch. This drives that exact pattern with the library's own class, 20
relays of a known tensor, and counts the ranks whose copy is wrong.

    .venv/bin/python bench/cache_dit_relay.py            # 4 ranks on gloo (launches itself with torch.distributed.run)
    .venv/bin/python bench/cache_dit_relay.py --ranks 2
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

RELAYS = 20


def relay() -> None:
    import torch
    import torch.distributed as dist
    from cache_dit.distributed.autoencoders.utils import TileBatchedP2PComm

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    group = dist.new_group(list(range(world)))
    wrong = 0
    for n in range(RELAYS):
        comm = TileBatchedP2PComm()
        comm.set_dims(5)  # as the Qwen-Image/Wan planners do: [1, C, T, H, W]
        if rank == 0:
            result = torch.full((1, 3, 1, 256, 256), float(n + 1))
        else:
            result = comm.recv_tensor(rank - 1, group, device="cpu", dtype=torch.float32)
        if rank < world - 1:
            comm.send_tensor(result, rank + 1, group)
        comm.sync()
        wrong += not bool(torch.all(result == n + 1))
    print(f"rank {rank} of {world}: {wrong} of {RELAYS} relays wrong", flush=True)
    dist.destroy_process_group()


def main() -> int:
    if "RANK" in os.environ:
        relay()
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ranks", type=int, default=4)
    a = ap.parse_args()
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={a.ranks}", __file__]
    return subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}).returncode


if __name__ == "__main__":
    raise SystemExit(main())
