"""What every command stands on, below everything else (the kernels included).

- :mod:`fmae.runtime.cli`: a command's flags, YAML, logging and one-line errors (:func:`run_command`);
- :mod:`fmae.runtime.config`: run configurations as dataclasses (:func:`setting`);
- :mod:`fmae.runtime.device`: the device and compute dtype of a run;
- :mod:`fmae.runtime.distributed`: the ``torchrun`` process group, or a stand-in for one process;
- :mod:`fmae.runtime.files`: files never seen half-written (JSON, safetensors), and digests of settings;
- :mod:`fmae.runtime.lock`: one writer per output folder (:func:`~fmae.runtime.lock.folder_lock`);
- :mod:`fmae.runtime.machine`: a description of this machine for results;
- :mod:`fmae.runtime.owner`: worker processes that end with their owner (:func:`~fmae.runtime.owner.exit_with`).
"""
