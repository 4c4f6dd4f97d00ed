"""experiments/pretrain.py on CPU with the tiny model: batches equal the model's own inputs, and resume."""

import pytest
import torch

from core.config import PromptConfig
from data_gen import geosynth
from data_gen.geoqa import load_split
from experiments.pretrain import Batches, Encoder, PretrainConfig, encode_all, pretrain
from mix.reflection import warmup_items


def items_for(tmp_path, n=12):
    geosynth.generate(tmp_path / "data", n, 0, seed=3)
    return warmup_items(load_split(tmp_path / "data", "train"), PromptConfig(), n, seed=0)


def test_precomputed_positions_give_the_models_own_loss(tiny_model_dir, tmp_path):
    """Batches pass 3D rope positions computed once; the loss must equal the model computing them."""
    from transformers import AutoModelForImageTextToText

    items = items_for(tmp_path)
    cfg = PretrainConfig(max_pixels=112 * 112, workers=2)
    model = AutoModelForImageTextToText.from_pretrained(str(tiny_model_dir), dtype=torch.float32).eval()
    enc = Encoder(tiny_model_dir, cfg)
    rows = encode_all(tiny_model_dir, items, cfg)  # two spawned worker processes
    assert rows[0]["input_ids"] == enc(items[0])["input_ids"]
    batches = Batches(rows, enc.tokenizer.pad_token_id, "cpu", torch.float32, model.model.get_rope_index)
    batch = batches([0, 3, 5, 7])
    with torch.no_grad():
        with_positions = model(**batch).loss
        batch.pop("position_ids")
        own = model(**batch).loss
    assert torch.allclose(with_positions, own, atol=1e-5), (with_positions, own)
    # labels cover the response and its <|im_end|> only
    first = batch["labels"][0]
    assert (first != -100).sum() == len(enc.tokenizer(items[0]["response"], add_special_tokens=False)["input_ids"]) + 1


def test_pretrain_stops_when_told_goes_on_when_allowed_and_resumes(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file

    from experiments.pretrain import STATE_FILE

    items = items_for(tmp_path)
    cfg = PretrainConfig(batch=4, max_steps=6, eval_every=2, max_pixels=112 * 112, workers=1, warmup_steps=2)
    seen = []

    def stop_at(limit):
        def on_save(step, folder, entry):
            seen.append(step)
            return step >= limit
        return on_save

    history = pretrain(tiny_model_dir, items, tmp_path / "w", cfg, stop_at(4))
    assert [h["step"] for h in history] == [2, 4] and history[-1]["stop"] and seen == [2, 4]
    assert (tmp_path / "w" / "step_000004" / "model.safetensors").is_file()
    assert not (tmp_path / "w" / "step_000002" / "optimizer.pt").exists()  # only the newest keeps it
    # The same settings again: asked once more, it stops without training.
    assert pretrain(tiny_model_dir, items, tmp_path / "w", cfg, stop_at(4)) == history and seen == [2, 4, 4]
    # A later target: it goes on from step 4 to max_steps.
    longer = pretrain(tiny_model_dir, items, tmp_path / "w", cfg, stop_at(99))
    assert [h["step"] for h in longer] == [2, 4, 6] and seen[-2:] == [4, 6]

    # Resume after a kill while saving step 8 (after the weights, before the save's completion mark).
    def killed_at_8(step, folder, entry):
        if step == 8:
            raise KeyboardInterrupt
        return False

    cfg8 = PretrainConfig(batch=4, max_steps=8, eval_every=2, max_pixels=112 * 112, workers=1, warmup_steps=2)
    with pytest.raises(KeyboardInterrupt):
        pretrain(tiny_model_dir, items, tmp_path / "w", cfg8, killed_at_8)
    assert not (tmp_path / "w" / "step_000008" / STATE_FILE).exists()
    resumed = pretrain(tiny_model_dir, items, tmp_path / "w", cfg8, stop_at(99))
    assert [h["step"] for h in resumed] == [2, 4, 6, 8]
    # The same weights as one uninterrupted run to step 6.
    straight = pretrain(tiny_model_dir, items, tmp_path / "u", cfg8, stop_at(99))
    assert [h["step"] for h in straight] == [2, 4, 6, 8]
    a = load_file(tmp_path / "w" / "step_000008" / "model.safetensors")
    b = load_file(tmp_path / "u" / "step_000008" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


@pytest.mark.slow  # ~16 s on 2 cores: the research model builder, run with make test-slow
def test_geosynth_model_script_smoke(tmp_path):
    """experiments/geosynth_model.py end to end on CPU (a few steps): model folder, card, record, the kept save."""
    import json

    from experiments import geosynth_model

    out = geosynth_model.main(["--out", str(tmp_path / "model"), "--work", str(tmp_path / "work"), "--train", "64",
                               "--test", "12", "--batch", "8", "--max_steps", "4", "--eval_every", "2",
                               "--eval_questions", "6", "--workers", "1", "--target", "30", "--judge_items", "8",
                               "--arith_items", "8"])
    info = json.loads((out / "geosynth_model.json").read_text())
    assert info["lr"] == 1e-3  # the small size's default, the shipped recipe
    assert info["judge_items"] == 8 and "and 8 self-select items built from them" in (out / "README.md").read_text()
    assert info["arith_items"] == 8 and "and 8 arithmetic drill items" in (out / "README.md").read_text()
    assert "not the default base model" in (out / "README.md").read_text()  # extra items: a variant, not the shipped recipe
    assert "The default base model" in geosynth_model.model_card({**info, "judge_items": 0, "arith_items": 0})
    # every save records how many arithmetic steps its greedy answers wrote wrong (None: it wrote none)
    assert all("arith_step_error_rate" in h for h in info["history"])
    assert "arithmetic steps written wrong (%)" in (out / "README.md").read_text()
    assert [h["step"] for h in info["history"]] == [2, 4]
    assert info["kept_step"] in (2, 4) and info["num_eval"] == 6 and info["num_test"] == 12
    assert 0 <= info["test_at_1"] <= 100 and info["weight_bytes"] < 25e6  # bf16 copy under the 25 MB budget
    card = (out / "README.md").read_text()
    assert info["command"] in card and f"step {info['kept_step']}" in card
    # Test@1 on the whole test split was measured with the kept save's own file
    kept = tmp_path / "work" / "steps" / f"step_{info['kept_step']:06d}"
    assert (kept / "test_all_greedy.jsonl").is_file()


@pytest.mark.slow  # ~16 s on 2 cores
def test_geosynth_model_medium_size(tmp_path):
    """--size medium builds the larger model, says so in its card, and a work folder of another size is refused."""
    import json

    from experiments import geosynth_model

    common = ["--work", str(tmp_path / "work"), "--train", "32", "--test", "6", "--batch", "4", "--max_steps", "2",
              "--eval_every", "2", "--eval_questions", "3", "--workers", "1"]
    out = geosynth_model.main(["--out", str(tmp_path / "model"), "--size", "medium", *common])
    info = json.loads((out / "geosynth_model.json").read_text())
    assert info["size"] == "medium" and info["parameters"] > 25e6
    assert info["lr"] == 3e-4 and "lr 0.0003" in (out / "README.md").read_text()  # the medium size's own default
    assert info["architecture"] == {"layers": 8, "hidden": 512, "vision_blocks": 6, "vision_width": 192}
    card = (out / "README.md").read_text()
    assert card.startswith("# geosynth-medium") and "8 layers" in card and "too large to ship" in card
    with pytest.raises(SystemExit, match="holds a medium model"):
        geosynth_model.main(["--out", str(tmp_path / "model2"), "--size", "small", *common])
