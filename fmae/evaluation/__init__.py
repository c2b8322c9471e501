"""``python -m fmae.evaluate``: how well a pre-trained model reconstructs the masked cubes of
held-out clips, overall and per facial region, beside baselines that see the same visible cubes
(:mod:`fmae.evaluation.evaluate`). Pre-training uses the same measure on its held-out sample."""
