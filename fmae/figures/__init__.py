"""Pictures of clips as uint8 arrays and PNG grids (:mod:`fmae.figures.drawing`): every image that
pre-training, ``viz`` and the experiments draw goes through here."""
