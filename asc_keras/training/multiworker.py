"""Training on several machines: TensorFlow's MultiWorkerMirroredStrategy under Keras 3's fit.

Keras 3's TensorFlow trainer (3.12) fails under ``MultiWorkerMirroredStrategy`` in two places
(keras-team/keras#20585, open); both are bookkeeping around the step, not the distributed step
itself, which TensorFlow runs (collective all-reduce of the gradients):

1. ``TensorFlowTrainer._maybe_symbolic_build`` averages the first batch over all replicas
   (``strategy.reduce('MEAN', batch, axis=None)``) only to learn its shapes.  Under collective
   all-reduce an eager reduce of a dataset's ``PerReplica`` fails ("Attempt to convert a value
   (PerReplica...)").  The shapes are those of the first local replica's batch, so that is
   what :func:`_symbolic_build_from_local_batch` hands on.
2. ``reduce_per_replica(logs, strategy, 'auto')`` averages each step's logs with
   ``strategy.reduce('MEAN', v, axis=0)``; the logs are scalars and have no axis 0
   ("Invalid reduction dimension 0 for input with 0 dimensions").  Replaced by the mean over
   replicas (``axis=None``) -- what 'mean' means for one value per replica.

:func:`patch_keras` replaces exactly these two functions, only when the multi-worker strategy
is made, and only in that case (every other strategy runs Keras' own code).  It checks first
that they are the ones it knows, so a Keras that moved them fails with this explanation
instead of training wrongly; tests pin that two workers train exactly as one process with two
replicas does, and keep the unpatched failure as a canary for the upstream fix.
"""

from __future__ import annotations

import json
import os

from asc_keras._runtime import tf

_PATCHED = False


def _trainer_module():
    from keras.src.backend.tensorflow import trainer

    missing = [
        name
        for name, owner in (
            ("_maybe_symbolic_build", trainer.TensorFlowTrainer),
            ("reduce_per_replica", trainer),
            ("_collective_all_reduce_multi_worker", trainer),
        )
        if not hasattr(owner, name)
    ]
    if missing:
        raise RuntimeError(
            "--strategy multiworker patches two functions of Keras' TensorFlow trainer "
            f"(keras-team/keras#20585); this Keras lacks {missing}. If that issue is fixed in "
            "this Keras, remove asc_keras/training/multiworker.py's patch; otherwise pin keras<3.13."
        )
    return trainer


def patch_keras() -> None:
    """Make ``Model.fit`` / ``evaluate`` work under MultiWorkerMirroredStrategy (idempotent)."""
    global _PATCHED
    if _PATCHED:
        return
    trainer = _trainer_module()
    from keras.src import tree

    original_build = trainer.TensorFlowTrainer._maybe_symbolic_build
    original_reduce = trainer.reduce_per_replica
    multi_worker = trainer._collective_all_reduce_multi_worker

    def _symbolic_build_from_local_batch(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if strategy is None or not multi_worker(strategy) or iterator is None:
            return original_build(self, iterator=iterator, data_batch=data_batch)
        for _, _, it in iterator:
            batch = next(it)
            data_batch = tree.map_structure(
                lambda v: (
                    strategy.experimental_local_results(v)[0]
                    if isinstance(v, tf.distribute.DistributedValues)
                    else v
                ),
                batch,
            )
            break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    def reduce_per_replica(values, strategy, reduction):
        if multi_worker(strategy) and reduction in ("auto", "mean"):
            return tree.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return original_reduce(values, strategy, reduction)

    trainer.TensorFlowTrainer._maybe_symbolic_build = _symbolic_build_from_local_batch
    trainer.reduce_per_replica = reduce_per_replica
    _PATCHED = True


def worker_index() -> int:
    """This process' worker index in ``TF_CONFIG`` (0: the chief, whose outputs are the run's)."""
    return int(_tf_config()["task"]["index"])


def _tf_config() -> dict:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise ValueError(
            "--strategy multiworker needs TF_CONFIG: on every machine, the same JSON cluster "
            'and this machine\'s task, e.g. TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", '
            '"host2:12345"]}, "task": {"type": "worker", "index": 0}}\' (README: several machines)'
        )
    try:
        cfg = json.loads(raw)
        cfg["cluster"]["worker"], cfg["task"]["index"]  # noqa: B018 (both must be there)
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"TF_CONFIG is not a worker cluster with a task index ({e}): {raw}") from e
    return cfg


def multiworker_strategy():
    """TensorFlow's MultiWorkerMirroredStrategy from ``TF_CONFIG``, Keras patched to fit under it.

    Create it before any other TensorFlow work of the process (TensorFlow's rule: collectives
    are configured when the runtime starts); ``asc-keras run --strategy multiworker`` does."""
    _tf_config()
    patch_keras()
    return tf.distribute.MultiWorkerMirroredStrategy()
