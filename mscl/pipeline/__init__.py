"""Running the experiment: params, paths, the stage loop, and ``make reproduce``.

- :mod:`~mscl.common.params`: the strict params schemas under ``params/<profile>/``;
- :mod:`~mscl.common.paths`, :mod:`~mscl.common.io`: where artifacts live, atomic JSON/JSONL;
- :mod:`~mscl.common.dist`: one process per GPU under a launcher;
- :mod:`~mscl.pipeline.stages`: the stage loop (train, evaluate, manifest; finished stages reused);
- :mod:`~mscl.pipeline.pilot`, :mod:`~mscl.pipeline.choices`: settings chosen by a stated rule;
- :mod:`~mscl.pipeline.reproduce`: every job and notebook of ``make reproduce``, resumable;
- :mod:`~mscl.pipeline.verify`: rebuild the data and re-score every finished stage.
"""
