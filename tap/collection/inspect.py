"""``python -m tap.collection.inspect DATASET``: show and replay collected trajectories.

Prints each trajectory's start chain in full, then one line per edit (the edit, the reward before
and after, the answers that changed), and replays the edits from the start chain to check that every
stored chain is reproduced exactly. ``--chain`` also prints every intermediate chain.

    python -m tap.collection.inspect data/bigbench_navigate/<hash> --trajectory 0 --chain
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tap.chains import Chain, Edit, apply_edit
from tap.errors import TapError, exit_code


def load_trajectories(path: str | Path) -> dict[int, list[dict]]:
    """Rows of a collection grouped by trajectory, in step order."""
    import datasets

    root = Path(path)
    triples = root / "triples" if (root / "triples").exists() else root
    if not (triples / "dataset_info.json").exists():
        raise TapError(f"{path} is not a collection: expected a folder written by `python -m tap.collect` "
                       "(it holds triples/ and meta.json).")
    out: dict[int, list[dict]] = {}
    for row in datasets.load_from_disk(str(triples)).to_list():
        out.setdefault(row["trajectory"], []).append(row)
    return {t: sorted(rows, key=lambda r: r["step"]) for t, rows in sorted(out.items())}


def replay_trajectory(rows: list[dict]) -> Chain:
    """Replay the stored edits from the stored start chain; raise if any stored chain differs."""
    chain = Chain.from_json(rows[0]["chain"])
    for row in rows:
        if chain != Chain.from_json(row["chain"]):
            raise TapError(f"trajectory {row['trajectory']} step {row['step']}: replayed chain differs from stored")
        chain = apply_edit(chain, Edit.from_json(row["edit"]))
        if chain != Chain.from_json(row["next_chain"]):
            raise TapError(f"trajectory {row['trajectory']} step {row['step']}: edit does not reproduce next_chain")
    return chain


def main(argv: list[str] | None = None) -> int:
    from tap.quiet import quiet

    quiet()
    ap = argparse.ArgumentParser(prog="python -m tap.collection.inspect", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", help="a collection folder (the `path` in tap.collect's summary)")
    ap.add_argument("--trajectory", type=int, action="append", help="only these trajectories (repeatable)")
    ap.add_argument("--chain", action="store_true", help="print every intermediate chain in full")
    args = ap.parse_args(argv)
    return exit_code(lambda: _show(args))


def _show(args: argparse.Namespace) -> None:
    """Print the chosen trajectories and replay each (a ``TapError`` if a stored chain does not reproduce)."""
    trajs = load_trajectories(args.dataset)
    meta = Path(args.dataset) / "meta.json"
    if meta.exists():
        print(json.dumps(json.loads(meta.read_text())["summary"]))
    chosen = args.trajectory or list(trajs)
    for t in chosen:
        if t not in trajs:
            raise TapError(f"no trajectory {t}; the collection has trajectories {list(trajs)}.")
        rows = trajs[t]
        print(f"\n== trajectory {t} ({len(rows)} edits) ==")
        print(Chain.from_json(rows[0]["chain"]).describe())
        print(f"reward {rows[0]['reward']:.3f} dense {rows[0]['dense']:.3f}")
        for row in rows:
            changed = sum(a != b for a, b in zip(row["answers"], row["next_answers"]))
            print(f"step {row['step']}: {Edit.from_json(row['edit']).describe()} | reward {row['reward']:.3f} -> "
                  f"{row['next_reward']:.3f} | dense {row['dense']:.3f} -> {row['next_dense']:.3f} | "
                  f"{changed}/{len(row['answers'])} answers changed")
            if args.chain:
                print("  " + Chain.from_json(row["next_chain"]).describe().replace("\n", "\n  "))
        replay_trajectory(rows)
        print("replay: every stored chain reproduced exactly")


if __name__ == "__main__":
    sys.exit(main())
