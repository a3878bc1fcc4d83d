"""Running the experiment: the stage loop, the studies trained for a rule, and ``make reproduce``.

- :mod:`~mscl.pipeline.plan`: a stage asked for: its folder, identity and seed;
- :mod:`~mscl.pipeline.stages`: the stage loop (train, evaluate, manifest; finished stages reused);
- :mod:`~mscl.pipeline.integrity`: file hashes, cache identity, the code that trained a stage;
- :mod:`~mscl.pipeline.clean`: remove a stage and every stage built on it;
- :mod:`~mscl.pipeline.pilot`, :mod:`~mscl.pipeline.choices`: settings trained for a stated rule;
- :mod:`~mscl.pipeline.budgets`: the budget axis (the main comparison at several budgets);
- :mod:`~mscl.pipeline.studies`: measurements that need a finished model (the rewriter's scale);
- :mod:`~mscl.pipeline.reproduce`: every job and notebook of ``make reproduce``, resumable;
- :mod:`~mscl.pipeline.verify`: rebuild the data and re-check every finished stage.
"""
