"""``python -m fmae.train``: self-supervised pre-training (paper Algorithm 2).

- :mod:`fmae.pretraining.train`: the run (:class:`TrainConfig`, :func:`pretrain`): data, model,
  resume, the loop, checkpoints;
- :mod:`fmae.pretraining.step`: one step, the generator and the discriminator updates;
- :mod:`fmae.pretraining.records`: what a run logs (TensorBoard, ``metrics.jsonl``, pictures).
"""
