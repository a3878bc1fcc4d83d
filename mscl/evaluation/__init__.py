"""From saved predictions to the paper's tables: metrics, claims, figures and the report.

- :mod:`~mscl.core.metrics`: ACC, KGR, KRR and the answer sources of a prediction;
- :mod:`~mscl.evaluation.conflict`: the picture of knowledge conflict across stages;
- :mod:`~mscl.evaluation.claims`: the paper's claims as paired bootstrap tests (Holm-adjusted);
- :mod:`~mscl.evaluation.report`: tables and figures under the profile's reports folder;
- :mod:`~mscl.evaluation.writeup`: ``reports/README.md``, written from what the notebooks saved;
- :mod:`~mscl.evaluation.glance`: the top-level README's results block, from the same tables.
"""
