"""Probe: can a text model of geosynth-small's size learn GeoSynth, and after how many steps?

A Qwen2 causal LM with the small model's text shape (6 layers, hidden 256, its tokenizer from
models/geosynth-small), random weights, trained on GeoSynth question + choices -> gold rationale
(loss on the rationale), no images (image_only_share 0). Every `every` steps: greedy accuracy on
300 difficulty-1 test questions and 300 train questions. It tells how many optimizer steps the
from-scratch model (experiments/pretrain.py) needs before test accuracy leaves chance.

    python -m experiments.geosynth_text_probe n=20000 steps=6000 every=1000 bs=64 d=1 rename=0
    python -m experiments.geosynth_text_probe n=60000 steps=6000 every=1000 bs=64 d=1,2,3 rename=0

Options (key=value): n train items, steps, every, bs batch, lr, d difficulties (cycled),
rename=1 renames the points with random letters per item, layers, hid.
Results (one H200, four probes sharing it): experiments/results_log.md.
"""
import random
import re
import sys
import time

import torch
from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM
from data_gen import geosynth as g
from data_gen.problem import LETTERS
torch.manual_seed(0)
args = dict(a.split('=') for a in sys.argv[1:])
N = int(args.get('n', 20000)); steps = int(args.get('steps', 3000)); diff = [int(x) for x in args.get('d', '1').split(',')]
rename = args.get('rename', '0') == '1'; bs = int(args.get('bs', 32)); lr = float(args.get('lr', 1e-3))
layers = int(args.get('layers', 6)); hid = int(args.get('hid', 256))
tok = AutoTokenizer.from_pretrained('models/geosynth-small')
PT = re.compile(r'(?<![A-Za-z])[A-Z](?![a-z])')
def ren(text, m): return PT.sub(lambda x: m.get(x.group(0), x.group(0)), text)
def fmt(r, rng):
    q, rat = r['question'], r['rationale'].rsplit('\nAnswer:', 1)
    if rename:
        pool = random.Random(rng.random()).sample([c for c in 'ABCDEFGHIJKLMNOPQRSTUVWXYZ'], 26)
        m = dict(zip('ABCDEFGHIJKLMNOPQRSTUVWXYZ', pool))
        q, body = ren(q, m), ren(rat[0], m)
    else: body = rat[0]
    opts = '\n'.join(f'({LETTERS[i]}) {c}' for i, c in enumerate(r['choices']))
    return f"{q}\nChoices:\n{opts}\n", f"{body}\nAnswer:{rat[1]}"
def items(split, n, seed):
    out = []; rng = random.Random(seed)
    for i in range(n):
        r, _ = g.make_item(7, split, i, diff[i % len(diff)], 0.0)
        out.append((fmt(r, rng), r['answer']))
    return out
t0=time.time(); tr = items('train', N, 1); te = items('test', 300, 2) if diff == [1] else items('test', 900, 2)[::3]  # difficulty-1 test questions; print('data', time.time()-t0, flush=True)
cfg = Qwen2Config(vocab_size=len(tok), hidden_size=hid, intermediate_size=4*hid, num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True, max_position_embeddings=1024)
dev = 'cuda' if torch.cuda.is_available() else 'cpu'; model = Qwen2ForCausalLM(cfg).to(dev); print('params', sum(p.numel() for p in model.parameters()))
eos = tok.convert_tokens_to_ids('<|im_end|>')
def enc(p, t):
    a = tok(p)['input_ids']; b = tok(t)['input_ids'] + [eos]
    return a + b, [-100]*len(a) + b
data = [enc(*x[0]) for x in tr]
opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1, betas=(0.9, 0.95))
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1, (s+1)/100) * max(0.05, 1 - s/steps))
def evaluate(te=te):
    model.eval(); ok = 0
    tok.padding_side = 'left'
    for i in range(0, len(te), 150):
        batch = te[i:i+150]
        enc_ = tok([p for (p, _), _ in batch], return_tensors='pt', padding=True).to(dev)
        with torch.no_grad():
            out = model.generate(**enc_, max_new_tokens=120, do_sample=False, eos_token_id=eos, pad_token_id=tok.pad_token_id or eos)
        for (row, ((p, t), ans)) in zip(out[:, enc_['input_ids'].shape[1]:], batch):
            txt = tok.decode(row, skip_special_tokens=True)
            m = re.search(r'Answer:\s*([A-D])', txt); ok += bool(m and m.group(1) == ans)
    model.train(); return ok / len(te) * 100, txt
rng = random.Random(0); t0 = time.time()
for s in range(steps):
    b = rng.sample(data, bs); L = max(len(x) for x, _ in b)
    ids = torch.tensor([x + [0]*(L-len(x)) for x, _ in b]); lab = torch.tensor([y + [-100]*(L-len(y)) for _, y in b])
    att = torch.tensor([[1]*len(x) + [0]*(L-len(x)) for x, _ in b]); ids, lab, att = ids.to(dev), lab.to(dev), att.to(dev)
    with torch.autocast(dev, dtype=torch.bfloat16, enabled=dev == 'cuda'):
        loss = model(input_ids=ids, attention_mask=att, labels=lab).loss
    loss.backward(); torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step(); sched.step(); opt.zero_grad()
    if (s+1) % int(args.get('every', 500)) == 0:
        acc, txt = evaluate(); tra, _ = evaluate(tr[:300]); print(f'step {s+1} loss {loss.item():.3f} test {acc:.1f} train {tra:.1f} t {time.time()-t0:.0f}s | {txt[-80:]!r}', flush=True)
