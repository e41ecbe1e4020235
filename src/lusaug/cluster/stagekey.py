"""The key of an item's inputs: ``python -m lusaug.cluster.stagekey ITEM`` in its working copy.

The same fields DVC's run-cache keys a stage by (command, every dependency with its hash,
params with their values; ``dvc/stage/cache.py``), computed with DVC's own serialiser once the
dependencies are in place. DVC will not compute its key for a stage with a ``persist`` output,
so this one is ours; it names the item's record and checkpoints in the store.
"""

from __future__ import annotations

import hashlib
import json
import sys


def stage_key(item: str, root: str = ".") -> str:
    from dvc.repo import Repo
    from dvc.stage.serialize import to_single_stage_lockfile

    with Repo(root) as repo:
        (stage,) = [s.stage for s in repo.stage.collect_granular(item)]
        stage.save_deps()
        entry = to_single_stage_lockfile(stage)
    inputs = {
        "item": item,
        "cmd": entry.get("cmd"),
        "deps": [(d["path"], d.get("md5") or d.get("hash")) for d in entry.get("deps", [])],
        "params": entry.get("params", {}),
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:32]


if __name__ == "__main__":
    print(stage_key(sys.argv[1]))
