"""The paper's method, independent of any training loop.

- :mod:`~mscl.core.losses`: the preference-based learning bias (L_PP, L_NP, the bounded form) and
  the total objective the trainer minimises;
- :mod:`~mscl.core.preference`: K sampled answers split into aligned and conflicting, with the
  frozen reference's log-probabilities;
- :mod:`~mscl.core.augment`: self-distillation, the model rewriting its own training inputs three
  ways (BKI, LCE, PA) and the prompts it is given;
- :mod:`~mscl.core.selection`: dynamic data selection by mutual information and the model's own
  judgement.
"""
