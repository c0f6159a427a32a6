"""Every metric a training iteration reports, defined once.

The result dict of ``algo.train()`` nests these keys by subject (``result["groups"]
["frac_all_incorrect"]``); TensorBoard tags are the same keys with their slash. ``docs/METRICS.md``
is generated from this table (``python -m ngrpo_rl.logged_metrics > docs/METRICS.md``) and a test
checks both that it is current and that every reported key is defined here.
"""

from __future__ import annotations

METRICS: dict[str, str] = {
    # rewards
    "reward/mean": "mean reward of the groups kept for training (after shaping such as the overlong penalty), before PSR / NSR drop samples",
    "reward/accuracy": "fraction of the responses trained on that the verifier scored correct",
    "reward/sampled_accuracy": "fraction of all responses sampled this iteration (before any group filter) scored correct",
    # groups (all groups sampled this iteration, before the group filter)
    "groups/frac_all_incorrect": "fraction of sampled groups in which every response is incorrect (GRPO gives these zero advantage; NGRPO a negative one)",
    "groups/frac_all_correct": "fraction of sampled groups in which every response is correct",
    "groups/frac_mixed": "fraction of sampled groups with both correct and incorrect responses",
    "groups/sampled": "groups generated this iteration, over all sampling rounds",
    "groups/kept": "groups trained on this iteration (prompts_per_step unless sampling ran out)",
    "groups/carried_over": "surplus kept groups held for the next iteration",
    "groups/sampling_rounds": "generation rounds this iteration (more than 1 only with a group filter)",
    # advantages (responses of the kept groups; token-level advantages such as GAE's over their tokens)
    "advantages/frac_zero": "fraction of advantages that are 0 (|A| < 1e-8): no policy gradient from them",
    "advantages/mean": "mean advantage",
    "advantages/std": "standard deviation of the advantages",
    "advantages/min": "smallest advantage",
    "advantages/max": "largest advantage",
    # clipping and ratios (response tokens, all optimizer steps of the iteration)
    "clip/upper_frac": "fraction of response tokens with A > 0 and rho > 1 + epsilon_pos (clipped above: no gradient)",
    "clip/lower_frac": "fraction of response tokens with A < 0 and rho < 1 - epsilon_neg (clipped below: no gradient)",
    "clip/dual_frac": "fraction of response tokens with A < 0 where the dual clip -A * c bounds the loss",
    "ratio/mean": "mean importance ratio rho = exp(logp - old_logp) over response tokens",
    "ratio/min": "smallest importance ratio",
    "ratio/max": "largest importance ratio",
    "ratio/first_step_min": "smallest importance ratio of the iteration's first optimizer step (1 when the old log-probs are the learner's)",
    "ratio/first_step_max": "largest importance ratio of the iteration's first optimizer step",
    # sampler / learner mismatch (recompute_old_logprobs=True)
    "is/weight_mean": "mean truncated importance weight min(pi_learner / pi_sampler, tis_cap) over response tokens",
    "is/weight_max": "largest truncated importance weight",
    "is/raw_weight_mean": "mean pi_learner / pi_sampler before the cap",
    "is/raw_weight_max": "largest pi_learner / pi_sampler before the cap",
    "is/capped_frac": "fraction of response tokens whose weight the cap tis_cap bound",
    "is/logprob_gap_mean": "mean |log pi_learner - log pi_sampler| over response tokens",
    "is/logprob_gap_max": "largest |log pi_learner - log pi_sampler|",
    # policy
    "policy/entropy": "mean per-token entropy of the policy (logits divided by the temperature) over response tokens",
    "policy/kl": "mean per-token KL estimate (kl_estimator) to the reference model; 0 when kl_coef = 0",
    "losses/total": "the minimised loss, the sum of the active terms (policy loss + kl_coef * KL - entropy_coef * entropy + the critic's value loss), mean over optimizer steps",
    # critic (PPO)
    "critic/value_loss": "the critic's clipped value loss 0.5 * max((V - R)^2, (V_clipped - R)^2), mean over response tokens and optimizer steps",
    "critic/clip_frac": "fraction of response tokens where the clipped value term was the larger (value_clip bound)",
    "critic/values_mean": "mean value the critic predicts over response tokens during the update",
    "critic/grad_norm": "the critic's global gradient norm before clipping, mean over optimizer steps",
    # responses
    "response/length_mean": "mean response length in tokens (sampled this iteration)",
    "response/length_max": "longest response in tokens",
    "response/truncation_rate": "fraction of responses that hit max_new_tokens without EOS",
    # verifier
    "verifier/no_answer_frac": "fraction of sampled responses in which no answer could be extracted",
    "verifier/timeouts": "responses whose verification ran past the deadline (scored 0)",
    "verifier/fast_path": "responses this iteration settled by the verifier's exact fast path (no math-verify)",
    "verifier/memo_hits": "responses this iteration whose math-verify verdict came from the memo (an identical answer and gold seen before)",
    "verifier/comparisons": "math-verify comparisons run in worker processes this iteration",
    # optimisation
    "optim/grad_norm": "global gradient norm before clipping, mean over optimizer steps",
    "optim/lr": "learning rate after the iteration's last step",
    "verifier/timeout_frac": "fraction of the responses to train on whose verdict timed out (scored 0)",
    "verifier/update_skipped": "1 when that fraction exceeded max_verifier_timeout_frac and the update was skipped, else 0",
    "optim/num_updates": "optimizer steps taken since the start",
    "optim/skipped_steps": "optimizer steps of this iteration skipped for a non-finite gradient (max_nonfinite_steps in a row stop training)",
    # throughput and time
    "throughput/tokens_per_s": "response tokens generated per second of generation time",
    "throughput/samples_per_s": "responses generated per second of generation time",
    "timers/generate": "seconds generating this iteration",
    "timers/score": "seconds verifying this iteration",
    "timers/learn": "seconds in the learner this iteration",
    "timers/sync": "seconds sending the new weights to the generation workers",
    "timers/evaluate": "seconds of pass@k evaluation (evaluation iterations only)",
    "timers/overlap_wait": "seconds the iteration waited, after its update, for the next batch generated in the background (overlap_generation)",
    "generation/off_policy": "1 when this iteration's batch was generated before the previous update (overlap_generation: one step off policy), else 0",
    "generation/worker_restarts": "generation actors recreated after a crash, since the start",
    "learner/restarts": "times the learner group was replaced after a learner died (from the last checkpoint), since the start",
}

EVALUATION_METRICS: dict[str, str] = {
    "evaluation/pass_at_<k>": "unbiased pass@k on held-out problems, one entry per k in evaluation_ks",
    "evaluation/pass_at_k_auc": "the NGRPO paper's Pass@k AUC over the measured ks (0 to 100)",
}

IMAGES: dict[str, str] = {
    "evaluation/pass_at_k_curve": "the held-out pass@k curve (x: log2 k) at each evaluation, an image in TensorBoard only (not in the result dict)",
}


def is_defined(key: str) -> bool:
    """True when ``key`` is a defined metric (``evaluation/pass_at_8`` matches
    ``evaluation/pass_at_<k>``). Keys avoid ``@``: TensorBoard tags may not contain it."""
    if key in METRICS or key in EVALUATION_METRICS:
        return True
    prefix = "evaluation/pass_at_"
    return key.startswith(prefix) and key[len(prefix):].isdigit()


def markdown_table() -> str:
    """The docs page: one row per metric."""
    lines = [
        "# Logged metrics",
        "",
        "Generated from `ngrpo_rl/logged_metrics.py`; do not edit by hand.",
        "Keys nest in the result dict by their first part (`result['clip']['upper_frac']`);",
        "TensorBoard tags are the keys as written.",
        "",
        "| key | meaning |",
        "|---|---|",
    ]
    for key, meaning in {**METRICS, **EVALUATION_METRICS}.items():
        lines.append(f"| `{key}` | {meaning} |")
    lines += ["", "Images (TensorBoard's Images tab):", "", "| tag | meaning |", "|---|---|"]
    for key, meaning in IMAGES.items():
        lines.append(f"| `{key}` | {meaning} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
