"""The vector catalogue's refresh as pool scoring meets it: a store of ``--pairs`` pair ids in
parts of ``--part`` ids (a scoring chunk's part), then parts arriving one at a time, as each
chunk of every shard writes one and reads vectors back (``VectorStore.refresh`` then extends
the catalogue with the parts it has not seen).

Prints, for the catalogue of the tree it runs in: seconds to take in the whole store at once
(a worker's first refresh), seconds per refresh that finds one new part (mean and max over
``--refreshes``), seconds to locate one chunk's ids, and the catalogue's runs. Run it against
two trees for a ratio (the README's row gives both, with the commit of each):

    PYTHONPATH=. .venv/bin/python benchmarks/vector_catalogue.py [--pairs 20000000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time

import numpy as np

from scoring.loop.vector_store import VectorCatalogue, _Part


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=20_000_000)
    parser.add_argument("--part", type=int, default=2048)
    parser.add_argument("--refreshes", type=int, default=64)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    # Ids as a pool's are: the store's parts hold them in the order scoring chunks read them
    # (id order within a shard, shards interleaved), here shuffled runs of consecutive ids.
    ids = np.arange(0, 2 * args.pairs, 2, dtype=np.int64)  # even: the odd ones arrive later
    chunks = np.array_split(ids, max(1, args.pairs // args.part))
    order = rng.permutation(len(chunks))
    parts = [_Part(f"part-{n:08d}", chunks[i]) for n, i in enumerate(order)]

    catalogue = VectorCatalogue()
    started = time.perf_counter()
    catalogue.extend(parts)
    whole = time.perf_counter() - started

    # Pairs embedded later lie anywhere in the id range (pairs that came back to the pool).
    new_ids = 2 * rng.choice(args.pairs, size=args.refreshes * args.part, replace=False) + 1
    per_refresh = []
    for number in range(args.refreshes):
        part = _Part(f"new-{number:04d}", new_ids[number * args.part : (number + 1) * args.part])
        started = time.perf_counter()
        catalogue.extend([part])
        per_refresh.append(time.perf_counter() - started)

    queries = rng.choice(np.concatenate([ids, new_ids]), size=args.part, replace=False)
    started = time.perf_counter()
    located = catalogue.locate(queries)
    locate_s = time.perf_counter() - started
    assert bool(np.all(located[0])), "every id is stored"

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    print(
        json.dumps(
            {
                "commit": commit,
                "pairs": args.pairs,
                "part": args.part,
                "whole_store_s": round(whole, 3),
                "refresh_one_part_mean_s": round(float(np.mean(per_refresh)), 4),
                "refresh_one_part_max_s": round(float(np.max(per_refresh)), 4),
                "locate_one_chunk_s": round(locate_s, 4),
                "runs": len(catalogue.runs) if hasattr(catalogue, "runs") else None,
            }
        )
    )


if __name__ == "__main__":
    main()
