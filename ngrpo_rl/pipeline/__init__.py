"""The training iteration as a pipeline of stages, each taking and returning a ``TrainingBatch``
(DESIGN.md section 4): collect (with oversampling and carry-over) -> shape rewards -> filter groups
-> annotate (reference log-probs, critic values) -> estimate advantages -> learn.

Everything here runs without Ray: ``engine.TrainingPipeline`` is the engine the RLlib algorithms
wrap. Submodules are imported on use so that ``ngrpo_rl.pipeline.shaping`` stays light.

- ``collect``: ``ProblemStream``, ``Sampler`` (generate and score), ``Collector``.
- ``shaping``: the reward-shaper registry (``overlong_penalty``, ...).
- ``stages``: filter, annotate, estimate, drop-samples stages and the metrics they explain.
- ``engine``: ``TrainingPipeline``, one iteration from problems to an optimizer update.
"""
