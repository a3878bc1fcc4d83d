"""From finished stages to the paper's tables: tables, claims, figures and the report.

- :mod:`~mscl.evaluation.tables`: the metrics of finished stages as tables, per seed or averaged;
- :mod:`~mscl.evaluation.picks`: what the rules read (the budget sweep, the choice studies);
- :mod:`~mscl.evaluation.budgets`: the budget axis read: table, figure against compute, claims;
- :mod:`~mscl.evaluation.conflict`: the picture of knowledge conflict across stages;
- :mod:`~mscl.evaluation.claims`: the paper's claims as paired bootstrap tests (Holm-adjusted);
- :mod:`~mscl.evaluation.report`: figures (and the tables' writer) under the profile's reports folder;
- :mod:`~mscl.evaluation.writeup`: ``reports/README.md``, written from what the notebooks saved;
- :mod:`~mscl.evaluation.glance`: the top-level README's results block, from the same tables.
"""
