#!/usr/bin/env python3
"""Writes Tests/LoftEvalTests/Fixtures/text_metrics.json: 200 generated
(prediction, references) pairs with every text metric computed by the
reference packages (rouge-score, sacrebleu, and the SQuAD v1.1 script's
functions, reproduced below verbatim in behaviour), for the Swift parity test.

Run with the reference venv:  /work/refvenv/bin/python tools/make_eval_fixtures.py
"""
import collections, json, os, random, re, string, sys

import sacrebleu
from rouge_score import rouge_scorer

# --- SQuAD v1.1 evaluation script (evaluate-v1.1.py), the functions it defines.
def normalize_answer(s):
    def remove_articles(text):
        return re.sub(r'\b(a|an|the)\b', ' ', text)
    def white_space_fix(text):
        return ' '.join(text.split())
    def remove_punc(text):
        exclude = set(string.punctuation)
        return ''.join(ch for ch in text if ch not in exclude)
    def lower(text):
        return text.lower()
    return white_space_fix(remove_articles(remove_punc(lower(s))))

def f1_score(prediction, ground_truth):
    prediction_tokens = normalize_answer(prediction).split()
    ground_truth_tokens = normalize_answer(ground_truth).split()
    common = collections.Counter(prediction_tokens) & collections.Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)

def exact_match_score(prediction, ground_truth):
    return normalize_answer(prediction) == normalize_answer(ground_truth)

def metric_max_over_ground_truths(metric_fn, prediction, ground_truths):
    return max(metric_fn(prediction, gt) for gt in ground_truths)

# --- generated pairs: shared words so scores spread over (0, 1), punctuation,
# numbers with separators, articles, newlines, non-ASCII and odd whitespace.
WORDS = ("the a an cat dog sat on mat model answer Loft assistant I am trained by project is what who "
         "3.14 1,000 2-3 e-mail U.S. don't it's (note) [x] {y} <tag> &amp; &quot;q&quot; café naïve Straße "
         "日本語 émigré ÉCOLE İstanbul KELVIN 42 100% $5 #1 @home a.b c,d x-y").split()
SEPS = [" ", " ", " ", " ", "  ", "\n", "\t", ", ", ". ", "! ", "? ", "\u00a0", "\u2003", " - ", "\r\n"]

def sentence(rng, n):
    out = []
    for i in range(n):
        out.append(rng.choice(WORDS))
        if i < n - 1:
            out.append(rng.choice(SEPS))
    s = "".join(out)
    if rng.random() < 0.5:
        s += rng.choice([".", "!", "?", " .", "", "\n"])
    return s

def mutate(rng, ref):
    words = ref.split(" ")
    out = []
    for w in words:
        r = rng.random()
        if r < 0.15:
            continue
        if r < 0.3:
            out.append(rng.choice(WORDS))
        elif r < 0.4:
            out.append(w.upper())
        else:
            out.append(w)
        if rng.random() < 0.1:
            out.append(rng.choice(WORDS))
    return " ".join(out)

def main():
    rng = random.Random(1234)
    pairs = []
    for i in range(200):
        nref = 1 if i % 5 else rng.choice([2, 3])
        refs = [sentence(rng, rng.randint(1, 18)) for _ in range(nref)]
        kind = i % 10
        if kind == 0:
            pred = refs[0]                      # exact
        elif kind == 1:
            pred = sentence(rng, rng.randint(1, 12))   # unrelated
        elif kind == 2:
            pred = ""                           # empty answer
        elif kind == 3:
            pred = "  " + refs[-1].upper() + " "
        else:
            pred = mutate(rng, rng.choice(refs))
        pairs.append({"prediction": pred, "references": refs})

    types = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
    scorer = rouge_scorer.RougeScorer(types)   # use_stemmer=False, the default
    bleu_corpus = sacrebleu.BLEU()             # 13a, exp smoothing
    bleu_sentence = sacrebleu.BLEU(effective_order=True)
    chrf = sacrebleu.CHRF()
    items = []
    for p in pairs:
        pred, refs = p["prediction"], p["references"]
        multi = scorer.score_multi(refs, pred)
        items.append({
            **p,
            **{t: multi[t].fmeasure for t in types},
            "exact_match": 1.0 if pred in refs else 0.0,
            "squad_em": 1.0 if metric_max_over_ground_truths(exact_match_score, pred, refs) else 0.0,
            "squad_f1": float(metric_max_over_ground_truths(f1_score, pred, refs)),
            "sentence_bleu": bleu_sentence.sentence_score(pred, refs).score,
            "sentence_chrf": chrf.sentence_score(pred, refs).score,
        })
    width = max(len(p["references"]) for p in pairs)
    streams = [[p["references"][k] if k < len(p["references"]) else None for p in pairs] for k in range(width)]
    hyps = [p["prediction"] for p in pairs]
    out = {
        "source": "tools/make_eval_fixtures.py; rouge-score %s, sacrebleu %s" % (
            __import__("importlib.metadata").metadata.version("rouge-score"), sacrebleu.__version__),
        "items": items,
        "corpus_bleu": bleu_corpus.corpus_score(hyps, streams).score,
        "corpus_chrf": chrf.corpus_score(hyps, streams).score,
        "corpus_bleu_first_100": bleu_corpus.corpus_score(hyps[:100], [s[:100] for s in streams]).score,
    }
    path = os.path.join(os.path.dirname(__file__), "..", "Tests", "LoftEvalTests", "Fixtures", "text_metrics.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
    print("wrote", os.path.normpath(path), "corpus BLEU %.4f chrF %.4f" % (out["corpus_bleu"], out["corpus_chrf"]))

if __name__ == "__main__":
    main()
