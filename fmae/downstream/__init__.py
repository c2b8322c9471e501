"""What a pre-trained encoder is used for: the commands ``probe``, ``predict``, ``extract`` and
``viz``, each in the module of its name.

- :mod:`fmae.downstream.probe`: linear probing and fine-tuning on a labelled set, with
  :mod:`~fmae.downstream.head` (the probe), :mod:`~fmae.downstream.features` (frozen features),
  :mod:`~fmae.downstream.fit`, :mod:`~fmae.downstream.finetune`, :mod:`~fmae.downstream.scores`,
  :mod:`~fmae.downstream.metrics` and :mod:`~fmae.downstream.intervals` (t, Wilson and
  bootstrap intervals; the paired one says whether the probe beats its random init);
- :mod:`fmae.downstream.predict`: engagement over time for a recording (per person with
  ``--faces all``), with :mod:`~fmae.downstream.report` (its ``report.html``), and
  :mod:`~fmae.downstream.live` (``--live``: a camera, a stream or a file as it plays, a row per
  window as it is decided);
- :mod:`fmae.downstream.extract`: encoder features of whole videos;
- :mod:`fmae.downstream.windows`: the face pass and the clip windows that predict and extract share;
- :mod:`fmae.downstream.viz`: pictures of what a model sees and looks at, with
  :mod:`~fmae.downstream.gradcam`.
"""
