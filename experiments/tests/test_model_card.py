"""The shipped model card's rebuild command resolves: the module it names for rebuilding imports, and its
parser accepts every flag of the command recorded in geosynth_model.json (the card keeps that command as
written at the time, `python -m train.geosynth_model`; the module has since moved to experiments/)."""

import importlib
import json
import re
import shlex
from pathlib import Path

MODEL = Path(__file__).resolve().parents[2] / "models" / "geosynth-small"


def test_card_names_the_module_that_rebuilds_it_and_its_flags_parse():
    card = (MODEL / "README.md").read_text(encoding="utf-8")
    named = re.search(r"The module is now\s+`([\w.]+)`", card)
    assert named, "models/geosynth-small/README.md must say which module rebuilds the model now"
    module = importlib.import_module(named.group(1))
    recorded = json.loads((MODEL / "geosynth_model.json").read_text(encoding="utf-8"))["command"]
    words = shlex.split(recorded)
    assert words[:2] == ["python", "-m"], recorded
    args = module.build_parser().parse_args(words[3:])  # every flag of the recorded command is still known
    assert args.train == 6000 and args.target == 42 and args.out == "/tmp/gsm2model"
    # the command in the card's text is the recorded one
    assert recorded in card
