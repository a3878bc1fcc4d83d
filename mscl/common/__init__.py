"""The bottom layer: plumbing every other layer may use, knowing nothing of models or the method.

- :mod:`~mscl.common.params`: the strict params schemas under ``params/<profile>/``;
- :mod:`~mscl.common.paths`: where artifacts, reports and stage folders live (the run layout);
- :mod:`~mscl.common.io`: atomic JSON/JSONL/YAML reads and writes whose errors name the file and line;
- :mod:`~mscl.common.dist`: processes and devices (one process per GPU under a launcher);
- :mod:`~mscl.common.answers`: how an answer is judged correct (the authors' containment test).
"""
