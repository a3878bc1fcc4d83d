"""The machinery under the method: backbones, prompts, LoRA, generation, the trainer.

- :mod:`~mscl.engine.models`: backbones (embedded GGUF, hub ids, local paths), prompts, LoRA;
- :mod:`~mscl.engine.generation`: the generation API (K samples, greedy answers) and its backends;
- :mod:`~mscl.engine.decoder`: the KV-cache decoding loop for plain causal LMs;
- :mod:`~mscl.engine.training`: packed examples, block-causal masks and the stage trainer;
- :mod:`~mscl.engine.packed_linear`: oneDNN packed linear layers for CPU training;
- :mod:`~mscl.engine.vllm_backend`: generation through vLLM on a GPU.
"""
