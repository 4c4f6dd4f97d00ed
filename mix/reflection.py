"""Build the R3V multi-task SFT mix from a pool of sampled rationales (DESIGN.md §1, step 2).

    QA       every train question -> "Answer: B"
    CoT      question -> a positive rationale                     (L_SFT, at most cot_per_question
                                                                   per question; R3V: one)
    refine   question + a negative rationale -> a positive one    (L_REF, at most one per question)
    select   question + shuffled candidates -> "Answer: B"        (L_SEL: 2 pos + 1 neg and
             1 pos + 2 neg where possible; or mixed N in 2..max for the scaling model;
             mix.select_sets=natural: N samples at random, repeats kept, as at test time;
             mix.extra_sets: more select sets, by name, from a plugin)

The pool holds the samples of iterations 0..k-1. Candidates are taken newest iteration first, by
iteration index (the reference ordered files by modification time, REFERENCE.md §7.13). A
candidate must pass the original's filter: longer than `min_chars` and not starting with "Answer"
(it has a rationale); mix.drop_no_answer and mix.drop_truncated also drop candidates without an
extractable answer or cut off at max_new_tokens, and mix.dedupe drops repeated texts (all three off
by default, as in the original; on in configs/r3v_recommended.yaml). With
`mix.value_check` (not in R3V) a correct multiple-choice candidate must also have computed the value
of the option it names (eval.answers.derived_value_matches), so lucky letters are not trained on; then
the filters named in `mix.filters` (none in R3V) run in their order. Every random
choice comes from an RNG keyed by (seed, iteration, question id), so the mix is reproducible and
does not depend on the order of the pool files.

Variants are looked up by name (core.registry): SELECT_TARGETS (mix.select_target; R3V's `answer`
here), SELECT_SETS (mix.select_sets; `fixed`, `natural`), FILTERS (mix.filters; none here) and
EXTRA_SETS (mix.extra_sets; none here). A plugin module named in `plugins` registers more
(experiments/variants.py).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

from core.config import ConfigError, MixConfig, PromptConfig
from core.registry import Registry
from data_gen import prompts
from data_gen.problem import Problem
from eval.answers import derived_value_matches
from eval.metrics import majority_vote


@dataclass(frozen=True)
class Candidate:
    text: str
    correct: bool
    iteration: int
    answer: str | None = None  # the letter (or value) it ends in, as the sampler read it


def filter_reason(text: str, answer: str | None, truncated: bool, min_chars: int, *,
                  drop_no_answer: bool = True, drop_truncated: bool = True) -> str | None:
    """Why a sampled rationale cannot be used as a candidate, or None if it can. The original's filter
    is the last two checks; mix.drop_truncated and mix.drop_no_answer add the first two."""
    if truncated and drop_truncated:
        return "truncated"
    if answer is None and drop_no_answer:
        return "no answer"
    if text.lstrip().startswith("Answer"):
        return "no rationale"
    if len(text) <= min_chars:
        return "too short"
    return None


def collect_candidates(pool: list[tuple[int, list[dict]]], cfg: MixConfig, reasons: Counter,
                       problems: dict[str, Problem] | None = None) -> dict[str, list[Candidate]]:
    """Usable candidates per question id, newest iteration first (pool: [(iteration, records)]).

    problems (by id) is needed for mix.value_check.
    """
    by_id: dict[str, list[Candidate]] = {}
    for iteration, records in sorted(pool, key=lambda p: -p[0]):
        for r in records:
            for text, answer, correct, truncated in zip(r["predictions"], r["answers"], r["correct"],
                                                        r["truncated"]):
                reason = filter_reason(text, answer, truncated, cfg.min_chars, drop_no_answer=cfg.drop_no_answer,
                                       drop_truncated=cfg.drop_truncated)
                problem = problems.get(r["id"]) if problems else None
                if not reason and cfg.value_check and correct:
                    reason = _value_reason(text, problem)
                for name in cfg.filters:
                    reason = reason or FILTERS.get(name)(text, answer, bool(correct), problem)
                if reason:
                    reasons[reason] += 1
                    continue
                reasons["kept positive" if correct else "kept negative"] += 1
                by_id.setdefault(r["id"], []).append(Candidate(text, bool(correct), iteration, answer))
    return by_id


def _value_reason(text: str, problem: Problem | None) -> str | None:
    """mix.value_check for a correct candidate: the reason to drop it, or None to keep it."""
    if problem is None or not problem.choices:
        return None
    if derived_value_matches(text, problem.answer, problem.choices) is False:
        return "value differs from its option"
    return None


def _dedupe(cands: list[Candidate]) -> list[Candidate]:
    """Drop repeated texts (the same rationale sampled twice adds nothing), keeping the newest."""
    seen: set[str] = set()
    out = []
    for c in cands:
        if c.text not in seen:
            seen.add(c.text)
            out.append(c)
    return out


# mix.select_target: f(problem, candidates as listed) -> the select item's target text
SELECT_TARGETS = Registry("mix.select_target")
# mix.select_sets: f(problem, positives, negatives, all usable candidates, rng, cfg, prompt_cfg) -> select items
SELECT_SETS = Registry("mix.select_sets")
# mix.filters: f(text, extracted answer, correct, problem or None) -> why the candidate is dropped, or None
FILTERS = Registry("mix.filters")
# mix.extra_sets: f(problem, positives, rng, count, cfg, prompt_cfg) -> up to `count` more select items
EXTRA_SETS = Registry("mix.extra_sets")


@SELECT_TARGETS.register("answer")
def answer_select_target(problem: Problem, chosen: list[Candidate]) -> str:
    """R3V's target: the direct answer, "Answer: B"."""
    return prompts.answer_target(problem)


def select_item(problem: Problem, chosen: list[Candidate], rng: random.Random, item_id: str,
                cfg: MixConfig, prompt_cfg: PromptConfig) -> dict:
    chosen = list(chosen)
    rng.shuffle(chosen)
    response = SELECT_TARGETS.get(cfg.select_target)(problem, chosen)
    vote = majority_vote([c.answer for c in chosen])  # as MV at test time: ties to the first listed
    return {"kind": "select", "id": item_id, "image": problem.image,
            "prompt": prompts.select_prompt(problem, [c.text for c in chosen], prompt_cfg),
            "response": response, "num_candidates": len(chosen),
            "vote_right": vote is not None and any(c.correct for c in chosen if c.answer == vote)}


@SELECT_SETS.register("fixed")
def fixed_or_mixed_select_items(problem: Problem, pos: list[Candidate], neg: list[Candidate], cands: list[Candidate],
                                rng: random.Random, cfg: MixConfig, prompt_cfg: PromptConfig) -> list[dict]:
    """R3V's sets from the question's positives and negatives: 2+1 and 1+2, or N = 2..max with select_mixed_n."""
    return (mixed_select_items(problem, pos, neg, rng, cfg, prompt_cfg) if cfg.select_mixed_n
            else fixed_select_items(problem, pos, neg, rng, cfg, prompt_cfg))


def fixed_select_items(problem: Problem, pos: list[Candidate], neg: list[Candidate],
                       rng: random.Random, cfg: MixConfig, prompt_cfg: PromptConfig) -> list[dict]:
    """The reference's two select items: 2 positives + 1 negative, 1 positive + 2 negatives."""
    items = []
    if len(pos) >= 2 and neg:
        items.append(select_item(problem, pos[:2] + neg[:1], rng, f"select-{problem.id}-2p1n", cfg, prompt_cfg))
    if pos and len(neg) >= 2:
        items.append(select_item(problem, pos[:1] + neg[:2], rng, f"select-{problem.id}-1p2n", cfg, prompt_cfg))
    return items


def mixed_select_items(problem: Problem, pos: list[Candidate], neg: list[Candidate], rng: random.Random,
                       cfg: MixConfig, prompt_cfg: PromptConfig) -> list[dict]:
    """Select items with N = 2..max_select_n candidates, at most select_per_n distinct sets per N."""
    items = []
    for n in range(2, cfg.max_select_n + 1):
        if len(pos) + len(neg) < n or not pos or not neg:
            break
        seen: set[frozenset[str]] = set()
        for _ in range(10 * cfg.select_per_n):  # bounded tries, like the reference's 10 trials
            if len(seen) >= cfg.select_per_n:
                break
            lo, hi = max(1, n - len(neg)), min(len(pos), n - 1)
            if lo > hi:
                break
            num_pos = rng.randint(lo, hi)
            chosen = rng.sample(pos, num_pos) + rng.sample(neg, n - num_pos)
            key = frozenset(c.text for c in chosen)
            if key in seen:
                continue
            seen.add(key)
            items.append(select_item(problem, chosen, rng, f"select-{problem.id}-n{n}-{len(seen)}", cfg,
                                     prompt_cfg))
    return items


@SELECT_SETS.register("natural")
def natural_sets(problem: Problem, pos: list[Candidate], neg: list[Candidate], cands: list[Candidate],
                 rng: random.Random, cfg: MixConfig, prompt_cfg: PromptConfig) -> list[dict]:
    return natural_select_items(problem, cands, rng, cfg, prompt_cfg)


def natural_select_items(problem: Problem, cands: list[Candidate], rng: random.Random, cfg: MixConfig,
                         prompt_cfg: PromptConfig) -> list[dict]:
    """mix.select_sets=natural: N of the question's samples at random, repeats kept, as at test time.

    cands are the question's usable samples of every pool iteration (after the filters, so not
    quite the unfiltered K samples a test question shows). N is 3 (R3V's test-time K), or 2..max_select_n
    with select_mixed_n. A set needs at least one correct candidate (there is nothing right to
    select otherwise); sets where every candidate is correct are kept, as they are at test time.
    Sets are distinct as sets of samples: when a rationale was sampled more than once, two sets may
    show the same texts (in another order), as two test-time draws can. (The session-5 runs of
    experiments/results_log.md used this rule.)
    """
    items = []
    for n in range(2, cfg.max_select_n + 1) if cfg.select_mixed_n else (3,):
        if len(cands) < n or not any(c.correct for c in cands):
            continue
        seen: set[tuple[int, ...]] = set()
        for _ in range(10 * cfg.select_per_n):
            if len(seen) >= cfg.select_per_n:
                break
            picked = tuple(sorted(rng.sample(range(len(cands)), n)))
            if picked in seen or not any(cands[i].correct for i in picked):
                continue
            seen.add(picked)
            items.append(select_item(problem, [cands[i] for i in picked], rng,
                                     f"select-{problem.id}-nat{n}-{len(seen)}", cfg, prompt_cfg))
    return items


def check_mix_config(cfg: MixConfig) -> None:
    """Refuse mix options that cannot build a mix (run.py calls this before any sampling)."""
    if cfg.include_select and (cfg.select_mixed_n or cfg.select_sets == "natural") and cfg.select_per_n < 1:
        raise ConfigError(f"mix.select_per_n={cfg.select_per_n}: use 1 or more "
                          f"(mix.include_select=false leaves the select items out).")
    if cfg.include_select and cfg.select_mixed_n and cfg.max_select_n < 2:
        raise ConfigError(f"mix.max_select_n={cfg.max_select_n}: mixed-N select sets need 2 or more candidates.")
    SELECT_SETS.get(cfg.select_sets)  # an unknown name is refused with the known ones
    SELECT_TARGETS.get(cfg.select_target)
    for name in cfg.filters:
        FILTERS.get(name)
    for name, count in cfg.extra_sets.items():
        EXTRA_SETS.get(name)
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise ConfigError(f"mix.extra_sets: {name}: {count!r}; give how many sets per question, 0 or more "
                              f"(e.g. mix.extra_sets={{{name}: 4}}).")
    if cfg.include_cot and cfg.cot_per_question < 1:
        raise ConfigError(f"mix.cot_per_question={cfg.cot_per_question}: use 1 or more "
                          f"(mix.include_cot=false leaves the rationales out).")


def build_mix(problems: list[Problem], pool: list[tuple[int, list[dict]]], iteration: int, seed: int,
              cfg: MixConfig, prompt_cfg: PromptConfig) -> tuple[list[dict], dict]:
    """The shuffled SFT mix for training iteration `iteration`, and its counts by kind and reason."""
    check_mix_config(cfg)
    reasons: Counter[str] = Counter()
    by_id = collect_candidates(pool, cfg, reasons, {p.id: p for p in problems})
    known = {p.id for p in problems}
    unknown = sorted(set(by_id) - known)
    if unknown:
        raise ValueError(f"sample pool has ids not in the train set (first: {unknown[:5]}); the pool "
                         f"belongs to other data. Use a new run folder or --restart.")
    items: list[dict] = []
    for p in problems:
        rng = random.Random(f"{seed}-mix-{iteration}-{p.id}")
        cands = _dedupe(by_id.get(p.id, [])) if cfg.dedupe else by_id.get(p.id, [])
        pos = [c for c in cands if c.correct]
        neg = [c for c in cands if not c.correct]
        if cfg.include_qa:
            items.append({"kind": "qa", "id": f"qa-{p.id}", "image": p.image,
                          "prompt": prompts.question_block(p), "response": prompts.answer_target(p)})
        if cfg.include_cot:
            for j, cand in enumerate(_dedupe(pos)[:cfg.cot_per_question]):  # distinct, newest first; the first keeps R3V's id
                items.append({"kind": "cot", "id": f"cot-{p.id}" + (f"-{j}" if j else ""), "image": p.image,
                              "prompt": prompts.cot_prompt(p, prompt_cfg), "response": cand.text})
        if cfg.include_refine and pos and neg:
            items.append({"kind": "refine", "id": f"refine-{p.id}", "image": p.image,
                          "prompt": prompts.refine_prompt(p, neg[0].text, prompt_cfg),
                          "response": pos[0].text})
        if cfg.include_select:
            items += SELECT_SETS.get(cfg.select_sets)(p, pos, neg, by_id.get(p.id, []), rng, cfg, prompt_cfg)
        if cfg.include_select:
            for name, count in cfg.extra_sets.items():
                items += EXTRA_SETS.get(name)(p, pos, rng, count, cfg, prompt_cfg)
    random.Random(f"{seed}-mix-{iteration}").shuffle(items)
    kinds = Counter(it["kind"] for it in items)
    selects = [it for it in items if it["kind"] == "select"]
    stats = {"iteration": iteration, "total": len(items),
             "kinds": {k: kinds.get(k, 0) for k in ("qa", "cot", "refine", "select")},
             # select items whose target a majority vote over their candidates would also give, and the
             # rest: only those teach anything voting does not already do
             "select_vote_right": sum(it["vote_right"] for it in selects),
             "select_vote_wrong": sum(not it["vote_right"] for it in selects),
             "candidates": dict(sorted(reasons.items())),
             "questions_with_positive": sum(1 for p in problems if any(c.correct for c in by_id.get(p.id, []))),
             "questions": len(problems)}
    return items, stats


def warmup_items(problems: list[Problem], prompt_cfg: PromptConfig, num_items: int, seed: int) -> list[dict]:
    """Gold-rationale CoT items for the optional warm-up SFT (the original R3V's distilled CoT)."""
    with_rationale = [p for p in problems if p.rationale]
    if not with_rationale:
        raise ValueError("warmup.enabled needs gold rationales (a `rationale` field), and the train "
                         "set has none; disable the warm-up or use GeoSynth data.")
    rng = random.Random(f"{seed}-warmup")
    chosen = rng.sample(with_rationale, min(num_items, len(with_rationale)))
    return [{"kind": "cot", "id": f"warmup-{p.id}", "image": p.image,
             "prompt": prompts.cot_prompt(p, prompt_cfg), "response": p.rationale} for p in chosen]
