"""``lusaug cluster repro``: dvc.yaml's stage items on Dask workers, one truth in DVC and MLflow.

The coordinator reads the plan from DVC itself (the items ``dvc repro`` would visit, in its
order) and submits every item as a Dask future that depends on its upstream items' futures.
A worker runs an item in a fresh git worktree of the same commit, with the lock entries and
git-tracked outputs of its upstream items written in and their cached outputs pulled from the
DVC remote, then ``dvc repro --pull --single-item ITEM`` and ``dvc push --run-cache ITEM``. The
item's lock entry and git-tracked outputs go back to the coordinator, which writes them into the
user's checkout as the item finishes, so the checkout ends as if ``dvc repro`` had run there.

Modules: :mod:`.plan` (the graph from DVC), :mod:`.store` (records and checkpoints on the
remote), :mod:`.worktree` (a worker's clone and an item's working copy), :mod:`.guard` (the item's
process dies with its worker), :mod:`.item` (the Dask task), :mod:`.checkout` (results into the
user's checkout), :mod:`.services` (which tracking/Optuna stores several hosts may share),
:mod:`.progress` (the live table), :mod:`.coordinator` (submission, faults, the run).
"""
