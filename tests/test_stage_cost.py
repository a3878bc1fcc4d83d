"""Work a stage no longer repeats gives the answers it would have computed (the cost issue's rule: an
optimisation that keeps a stage's identity keeps its predictions)."""
from __future__ import annotations

from mscl import benchmark
from mscl.common.io import read_jsonl
from mscl.common.params import load_params
from mscl.engine.generation import evaluation_answer_sets
from mscl.pipeline.stages import finished_model, run_stage


def test_old_answers_read_from_the_previous_stage_equal_asking_the_start_model(scratch):
    """Stage 2's old answers come from stage 1's predictions; asking stage 1's finished model (the
    start model of stage 2, rebuilt from its saved adapter) gives the same answers."""
    params = load_params("smoke", "training")
    for method in ("cit", "pbl"):
        manifest = run_stage("smoke", "domain_independent", method, 2, verbose=False)
        folder = scratch / "runs" / "smoke"
        rows = read_jsonl(next(folder.glob(f"**/{method}/stage2/predictions.jsonl")))
        model, tokenizer = finished_model("smoke", "domain_independent", method, 1, params=params)
        data = benchmark.probe.ensure_benchmark("smoke", params.data_seed)
        sets = benchmark.stage_sets(data, "domain_independent", 2)
        names = ["eval", "edited", "validation"]
        asked = evaluation_answer_sets(model, tokenizer, sets, names, params.eval, "check")
        saved = {name: [r["old_prediction"] for r in rows if r["set"] == name] for name in names}
        for name in names:
            diff = [(a, b) for a, b in zip(saved[name], asked[name]) if a != b]
            assert not diff, (method, name, diff[:5], len(diff), len(asked[name]))
        assert manifest["timings_s"]["eval_old"] >= 0
