"""The builtin base model: a tiny NorBERT4-style masked LM built from the training text.

It lets the whole pipeline run offline on a CPU in minutes. It is built
deterministically from a seed and the prepared training text: a WordPiece
tokenizer, the GPT-BERT miniature in ``gptbert_remote/`` (remote code with the
same soft-capped head as NorBERT4) and a short masked-LM pre-training. The
result is written the way a hub snapshot of ``ltg/norbert4-*`` looks
(``config.json`` with ``auto_map``, the remote-code files, ``model.safetensors``,
the tokenizer), so ``patch`` treats it exactly like the real model.
"""
from __future__ import annotations

import json
import logging
import math
import random
import shutil
import time
from collections import Counter
from pathlib import Path

import torch
from safetensors.torch import save_file
from tqdm.auto import tqdm

from ..params import BuiltinParams

log = logging.getLogger(__name__)

REMOTE_CODE = Path(__file__).parent / "gptbert_remote"
# NorBERT4's special-token ids: unk 0, bos 1, eos 2, pad 3, mask 4.
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", "<mask>"]
AUTO_MAP = {
    "AutoConfig": "configuration_gptbert.GptBertConfig",
    "AutoModel": "modeling_gptbert.GptBertModel",
    "AutoModelForMaskedLM": "modeling_gptbert.GptBertForMaskedLM",
}


def _stem_length(word: str, stem: str) -> int:
    """How much of ``word`` its stem keeps as a prefix (Snowball mostly cuts suffixes, sometimes rewrites them)."""
    k = 0
    while k < min(len(word), len(stem)) and word[k] == stem[k]:
        k += 1
    return k if k >= 2 else len(word)


def wordpiece_vocabulary(words: Counter, size: int) -> list[str]:
    """A stem-aware WordPiece vocabulary chosen by frequency, with ties broken alphabetically.

    Each word is split by the Norwegian Snowball stemmer into a stem (a word-initial piece) and its
    inflection (a ``##`` continuation): ``fjordene`` and ``fjorden`` share the token ``fjord``, so an
    inflected query word matches its passage exactly, as BM25's stemmer lets it. Inflected whole words
    are not candidates, so WordPiece's greedy longest match stops at the stem. Prefixes and ``##`` pieces
    of the stems come next (at a quarter of their weight), so words never seen in training still break
    into meaningful pieces. ``tokenizers``' own trainer breaks ties in hash order (two runs on the same
    text give different vocabularies); this one is a pure function of the text.
    """
    import Stemmer

    stemmer = Stemmer.Stemmer("norwegian")
    chars = sorted({c for word in words for c in word})
    base = SPECIAL_TOKENS + chars + [f"##{c}" for c in chars]
    scores: Counter = Counter()
    fragments: Counter = Counter()
    for word, count in words.items():
        k = _stem_length(word, stemmer.stemWord(word))
        scores[word[:k]] += count * k
        if k < len(word) and len(word) - k <= 6:
            scores[f"##{word[k:]}"] += count * (len(word) - k)
        for j in range(2, k):
            fragments[word[:j]] += count * j
        for j in range(1, k - 1):
            if k - j <= 6:
                fragments[f"##{word[j:k]}"] += count * (k - j)
    for piece, score in fragments.items():
        scores[piece] += score // 4
    ranked = sorted((piece for piece in scores if piece not in base and scores[piece] > 1),
                    key=lambda piece: (-scores[piece], piece))
    return base + ranked[: max(0, size - len(base))]


def train_tokenizer(texts: list[str], vocab_size: int, max_length: int):
    """A lower-casing WordPiece tokenizer that adds ``<s> … </s>`` like NorBERT4's."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    words: Counter = Counter()
    for text in texts:
        words.update(word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    vocabulary = wordpiece_vocabulary(words, vocab_size)
    tokenizer = Tokenizer(models.WordPiece({piece: i for i, piece in enumerate(vocabulary)}, unk_token="<unk>", max_input_chars_per_word=50))
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.add_special_tokens(SPECIAL_TOKENS)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> $B </s>", special_tokens=[("<s>", 1), ("</s>", 2)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
        pad_token="<pad>", mask_token="<mask>", model_max_length=max_length,
    )


def model_config(params: BuiltinParams, vocab_size: int) -> dict:
    head = params.hidden_size // params.num_attention_heads
    return {
        "architectures": ["GptBertForMaskedLM"],
        "model_type": "gpt_bert",
        "auto_map": AUTO_MAP,
        "vocab_size": vocab_size,
        "hidden_size": params.hidden_size,
        "intermediate_size": params.intermediate_size,
        "num_layers": params.num_layers,
        "num_attention_heads": params.num_attention_heads,
        "query_key_head_size": head,
        "value_head_size": head,
        "max_sequence_length": params.max_length,
        "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 3, "mask_token_id": 4,
    }


def write_remote_code(folder: Path, config: dict) -> None:
    for source in REMOTE_CODE.glob("*.py"):
        shutil.copy(source, folder / source.name)
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def _batches(encoded: list[list[int]], batch_size: int, rng: random.Random) -> list[list[list[int]]]:
    """Length-bucketed batches in random order: little padding, still shuffled."""
    order = sorted(range(len(encoded)), key=lambda i: (len(encoded[i]), rng.random()))
    batches = [[encoded[i] for i in order[s:s + batch_size]] for s in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def all_position_labels(batch: dict, tokenizer) -> torch.Tensor:
    """Labels at every real token: masked ones are predicted from context, visible ones reproduce themselves.

    Plain masked-LM trains the copy of a visible token on ~1.5% of positions, which leaves a tiny model
    predicting frequent words everywhere; SPLADE builds on a head that also emits the text's own tokens.
    """
    original = torch.where(batch["labels"] != -100, batch["labels"], batch["input_ids"])
    special = torch.isin(original, torch.tensor(tokenizer.all_special_ids))
    return original.masked_fill(special | (batch["attention_mask"] == 0), -100)


def _train(model, epoch_batches, loss_of, learning_rate: float, total: int, desc: str) -> tuple[float, float]:
    """AdamW with linear warm-up (10%) and decay over ``total`` steps; ``epoch_batches()`` gives one epoch's batches.

    Returns the mean loss of the first and the last 10% of the steps.
    """
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    warmup = max(1, total // 10)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup)))
    )
    model.train()
    losses: list[float] = []
    with tqdm(total=total, desc=desc, unit="step", disable=None, mininterval=1.0) as bar:
        while len(losses) < total:
            for batch in epoch_batches():
                if len(losses) >= total:
                    break
                loss = loss_of(batch)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(loss.item())
                bar.update(1)
                bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}")
    model.eval()
    first, last = losses[: max(1, total // 10)], losses[-max(1, total // 10):]
    return sum(first) / len(first), sum(last) / len(last)


def masked_lm_loss(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The builtin model's own masked-LM loss (``GptBertForMaskedLM.forward`` in ``gptbert_remote/``: soft-capped
    logits, position ``i`` predicting token ``i + 1``), with the head run only at the positions that have a label.

    The model's forward caps and copies the logits of every position, padding included; this is the same loss
    in about half the time.
    """
    hidden, _ = model.get_contextualized_embeddings(input_ids, attention_mask)
    targets = labels[:, 1:]
    labelled = targets != -100
    logits = model.classifier(hidden[:, :-1][labelled])
    return torch.nn.functional.cross_entropy(30 * torch.sigmoid(logits / 7.5), targets[labelled])


def pretrain(model, tokenizer, texts: list[str], params: BuiltinParams) -> dict:
    """A short masked-LM pre-training through the model's own (capped, shifted) loss (:func:`masked_lm_loss`)."""
    from transformers import DataCollatorForLanguageModeling

    rng = random.Random(params.seed)
    encoded = tokenizer(texts, truncation=True, max_length=params.max_length)["input_ids"]
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15, seed=params.seed)
    total = max(1, int(math.ceil(len(encoded) / params.pretrain_batch_size) * params.pretrain_epochs))

    def loss_of(batch_ids):
        batch = collator([{"input_ids": ids} for ids in batch_ids])
        return masked_lm_loss(model, batch["input_ids"], batch["attention_mask"], all_position_labels(batch, tokenizer))

    start, end = _train(model, lambda: _batches(encoded, params.pretrain_batch_size, rng), loss_of,
                        params.pretrain_learning_rate, total, "pre-training builtin masked LM")
    return {"steps": total, "loss_start": start, "loss_end": end}


@torch.no_grad()
def pooled_raw_logits(model, tokenizer, texts: list[str], max_length: int, batch_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Per text: the max over positions of every uncapped head logit (what SPLADE pools), and which tokens it holds.

    Position ``i`` of the head predicts token ``i + 1`` (NorBERT4's right shift), so the logits at ``i`` count
    where token ``i + 1`` is real; presence is taken from the same shifted ids.
    """
    model.eval()
    vocab = model.classifier.emb2vocab.out_features
    pooled = torch.empty(len(texts), vocab)
    present = torch.zeros(len(texts), vocab, dtype=torch.bool)
    ids = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    order = sorted(range(len(texts)), key=lambda i: len(ids[i]))  # batches of similar length: little padding
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        encoded = tokenizer.pad({"input_ids": [ids[i] for i in rows]}, return_tensors="pt")
        hidden, _ = model.get_contextualized_embeddings(encoded["input_ids"], encoded["attention_mask"])
        real = encoded["attention_mask"][:, 1:].bool()
        raw = model.classifier(hidden)[:, :-1].masked_fill(~real[..., None], float("-inf"))
        pooled[rows] = raw.amax(dim=1)
        present[rows] = torch.zeros(len(rows), vocab, dtype=torch.bool).scatter_(1, encoded["input_ids"][:, 1:].masked_fill(~real, 0), True)
    present[:, tokenizer.all_special_ids] = False
    return pooled, present


@torch.no_grad()
def calibrate_output_head(model, tokenizer, texts: list[str], params: BuiltinParams) -> dict:
    """Calibrate each token's output row so that its uncapped SPLADE weight is its IDF term weight where the text
    holds it, and 0 elsewhere.

    Masked-LM training is shift-invariant and bakes each token's frequency into its bias. A model pre-trained for
    a minute, with the cap removed, gives ``.``, ``og`` and ``##en`` the largest weight of every vector (they match
    every passage) and fires on hundreds of tokens a text does not contain: its untrained SPLADE scores 0.25 NDCG@10
    on dev where the same tokens, used lexically, score 0.77. A long-trained capped model such as NorBERT4 separates
    present from absent tokens by itself, and SPLADE learns term weights from hundreds of thousands of queries; a
    2M-parameter model with a thousand training pairs does neither. Two per-token edits of the head stand in:

    1. a bias shift ``d``, chosen per token to minimise, over the pre-training texts,
       ``mean_present (w - 1)^2 + absent_weight * mean_absent w^2`` with ``w = log1p(relu(max logit + d))``;
    2. a scale of the token's row and bias by ``expm1(idf_scale * sqrt(idf)) / expm1(1)``, so that a present token
       weighs about ``idf_scale * sqrt(idf)`` and a dot product sums IDF over shared tokens. Scaling keeps the sign
       of every logit, so a token that is inactive stays inactive.

    Tokens the texts never hold get the median shift and the largest IDF. The order of the predictions at a
    position changes only by these per-token edits; training then learns its own weights from here.
    """
    pooled, present = pooled_raw_logits(model, tokenizer, texts, params.max_length)
    n_present = present.sum(dim=0)
    n_absent = (~present).sum(dim=0).clamp(min=1)
    best_shift = torch.zeros(pooled.shape[1])
    best_loss = torch.full((pooled.shape[1],), float("inf"))
    for shift in torch.arange(-30.0, 15.0 + 1e-6, 0.25):
        weight = torch.log1p(torch.relu(pooled + shift))
        loss = ((weight - 1) ** 2 * present).sum(dim=0) / n_present.clamp(min=1)
        loss += params.absent_weight * (weight ** 2 * ~present).sum(dim=0) / n_absent
        better = loss < best_loss
        best_shift[better], best_loss[better] = shift, loss[better]
    seen = n_present > 0
    best_shift[~seen] = best_shift[seen].median()
    idf = torch.log1p((len(texts) - n_present + 0.5) / (n_present + 0.5))
    scale = torch.expm1(params.idf_scale * idf.sqrt()) / math.expm1(1.0) if params.idf_scale > 0 else torch.ones_like(idf)
    head = model.classifier.emb2vocab
    if head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr():
        head.weight = torch.nn.Parameter(head.weight.detach().clone())  # the edit is the head's, not the embeddings'
    head.bias += best_shift.to(head.bias.dtype)
    head.bias *= scale.to(head.bias.dtype)
    head.weight *= scale.to(head.weight.dtype)[:, None]
    weights = torch.log1p(torch.relu((pooled + best_shift) * scale))
    return {
        "bias_shift_median": round(float(best_shift[seen].median()), 4),
        "own_tokens_active": round(float(((weights > 0) & present).sum() / present.sum().clamp(min=1)), 4),
        "active_dims_mean": round(float((weights > 0).sum(dim=1).float().mean()), 1),
    }


def lexical_targets(tokenizer, texts: list[str], max_length: int, k1: float = 1.2, b: float = 0.75) -> list[dict[int, float]]:
    """Per text: each of its own tokens weighted by the square root of its BM25 term weight over ``texts``.

    A dot product of two such vectors sums ``sqrt(bm25_q * bm25_d)`` over the shared tokens; on the sample's dev
    split that ranks at 0.81 NDCG@10 (BM25 with the Norwegian stemmer: 0.76).
    """
    special = set(tokenizer.all_special_ids)
    counts = [Counter(i for i in ids if i not in special)
              for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
    df = Counter(token for count in counts for token in count)
    idf = {token: math.log1p((len(counts) - n + 0.5) / (n + 0.5)) for token, n in df.items()}
    average = sum(sum(count.values()) for count in counts) / max(1, len(counts))
    targets = []
    for count in counts:
        norm = k1 * (1 - b + b * sum(count.values()) / average)
        targets.append({token: math.sqrt(idf[token] * tf * (k1 + 1) / (tf + norm)) for token, tf in count.items()})
    return targets


def head_features(classifier, hidden: torch.Tensor) -> torch.Tensor:
    """What the builtin head (``LMClassifier`` in ``gptbert_remote/``) feeds its vocabulary projection ``emb2vocab``."""
    from transformers.activations import gelu_new

    return classifier.post_norm(gelu_new(classifier.projection(classifier.pre_norm(hidden))))


LENGTH_GROUP = 8  # texts per encoder pass in the lexical regression


def sparse_pooled_weights(head: torch.nn.Linear, normed: torch.Tensor, real: torch.Tensor, keep: torch.Tensor,
                          special: torch.Tensor) -> torch.Tensor:
    """SPLADE's pooled weights ``max_i log1p(relu(head(normed_i)))`` (texts x vocabulary), with the gradient of the
    full computation at a fraction of its cost.

    The max over positions passes its gradient to one position per (text, token), and ``relu`` passes none where
    the weight is 0. So the head runs without a graph over the real positions (``real``: right-padded, texts x
    positions), to find each entry's winning position, and again with one, only for the entries that are active or
    in ``keep``: a few thousand dot products instead of texts x positions x vocabulary. Special tokens weigh 0.
    """
    with torch.no_grad():
        raw = head(normed[real])  # real positions only (right padding: text by text, in order)
        best = torch.full(keep.shape, -1e4, dtype=raw.dtype, device=raw.device)
        position = torch.zeros(keep.shape, dtype=torch.long, device=raw.device)
        start = 0
        for row, length in enumerate(real.sum(dim=1).tolist()):
            if length:
                best[row], position[row] = raw[start:start + length].max(dim=0)
            start += length
        del raw
        chosen = (best > 0) | keep
        chosen[:, special] = False
    rows, tokens = chosen.nonzero(as_tuple=True)
    logits = (normed[rows, position[rows, tokens]] * head.weight[tokens]).sum(dim=-1) + head.bias[tokens]
    weights = torch.zeros(best.shape, dtype=logits.dtype, device=logits.device)
    return weights.index_put((rows, tokens), torch.log1p(torch.relu(logits)))


def regress_lexical(model, tokenizer, texts: list[str], params: BuiltinParams) -> dict:
    """Train the whole model so that its SPLADE vector of a text is that text's :func:`lexical_targets`.

    The loss is SPLADE-shaped: ``w = max_i log1p(relu(logit_i))`` per token (the uncapped head, as the patched
    model emits it), squared error against the target on the text's own tokens, plus
    ``lexical_absent_weight * w^2`` on every other token, both divided by the number of own tokens. An own token
    that the calibration left inactive gets no gradient (relu): the regression sharpens weights, it does not
    revive tokens. The head calibration alone leaves query term weights nearly unrelated to IDF (correlation
    0.17 on dev); here the model learns them from context, tf and length included, so SPLADE training starts
    from a lexical model.

    Each step encodes its texts in groups of similar length and computes the pooled weights with
    :func:`sparse_pooled_weights`: the same loss and gradient as the full texts x positions x vocabulary
    computation, at about a sixth of its time (300 steps: 55 s instead of 320 s on 2 CPU cores).
    """
    rng = random.Random(params.seed + 1)
    targets = lexical_targets(tokenizer, texts, params.max_length)
    encoded = tokenizer(texts, truncation=True, max_length=params.max_length)["input_ids"]
    special = torch.tensor(tokenizer.all_special_ids)
    vocab = model.classifier.emb2vocab.out_features

    def epoch_batches():
        order = list(range(len(encoded)))
        rng.shuffle(order)  # mixed lengths in a batch: queries and passages are fitted together
        return [order[s:s + params.pretrain_batch_size] for s in range(0, len(order), params.pretrain_batch_size)]

    def pooled_weights(rows, own):
        width = max(len(encoded[i]) for i in rows)
        input_ids = torch.full((len(rows), width), tokenizer.pad_token_id)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for row, i in enumerate(rows):
            input_ids[row, :len(encoded[i])] = torch.tensor(encoded[i])
            attention[row, :len(encoded[i])] = 1
        hidden, _ = model.get_contextualized_embeddings(input_ids, attention)
        normed = head_features(model.classifier, hidden[:, :-1])  # position i predicts token i + 1 (NorBERT4's shift)
        return sparse_pooled_weights(model.classifier.emb2vocab, normed, attention[:, 1:].bool(), own, special)

    def loss_of(rows):
        rows = sorted(rows, key=lambda i: len(encoded[i]))  # the encoder runs on groups of similar length: little padding
        target = torch.zeros(len(rows), vocab)
        own = torch.zeros(len(rows), vocab, dtype=torch.bool)
        for row, i in enumerate(rows):
            for token, weight in targets[i].items():
                target[row, token], own[row, token] = weight, True
        weights = torch.cat([pooled_weights(rows[s:s + LENGTH_GROUP], own[s:s + LENGTH_GROUP])
                             for s in range(0, len(rows), LENGTH_GROUP)])
        n_own = own.sum().clamp(min=1)
        loss = (((weights - target) ** 2) * own).sum() / n_own
        return loss + params.lexical_absent_weight * ((weights ** 2) * ~own).sum() / n_own

    start, end = _train(model, epoch_batches, loss_of, params.lexical_learning_rate, params.lexical_steps,
                        "lexical regression of the builtin head")
    return {"lexical_steps": params.lexical_steps, "lexical_loss_start": round(start, 4),
            "lexical_loss_end": round(end, 4)}


REFIT_SCALES = 2.0 ** torch.linspace(-2, 2, 17)  # a head row's scale: 1/4 ... 4
REFIT_SHIFTS = torch.arange(-8.0, 8.0 + 1e-6, 0.5)  # its bias shift, in raw-logit units
REFIT_TOP_ABSENT = 128  # the absent entries per token that the fit scores exactly (the rest: bounded by the last)


@torch.no_grad()
def fit_token_affine(pooled: torch.Tensor, targets: list[dict[int, float]],
                     absent_weight: float) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    """Per vocabulary token ``t``: the scale ``s`` and shift ``d`` (from a grid) that minimise

    ``sum_own (log1p(relu(s * (m + d))) - target)^2 + absent_weight * sum_absent log1p(relu(s * (m + d)))^2``,

    divided by the number of texts that hold ``t``, where ``m`` is a text's pooled raw logit of ``t`` (``pooled``,
    texts x vocabulary) and the targets are :func:`lexical_targets`. Per token, only the ``REFIT_TOP_ABSENT``
    largest absent logits are scored one by one; each of the others is counted at the smallest of those, an
    upper bound, so the fit never underrates the cost of firing where the text lacks the token. ``(1, 0)`` is on
    the grid: no token ends worse off than before. Tokens that no text holds keep ``(1, 0)``.

    Returns the scales, the shifts, and the mean loss over the tokens the texts hold after and before the fit.
    """
    n, vocab = pooled.shape
    pairs = [(row, token, weight) for row, tokens in enumerate(targets) for token, weight in tokens.items()]
    rows, cols = torch.tensor([p[0] for p in pairs]), torch.tensor([p[1] for p in pairs])
    target = torch.tensor([p[2] for p in pairs], dtype=pooled.dtype)
    own = pooled[rows, cols]
    n_own = torch.bincount(cols, minlength=vocab).to(pooled.dtype)
    absent = pooled.index_put((rows, cols), torch.tensor(float("-inf"), dtype=pooled.dtype))
    k = min(REFIT_TOP_ABSENT, n)
    absent = absent.topk(k, dim=0).values.T.clamp(min=-1e4)  # vocabulary x k, largest first
    rest = (n - n_own - k).clamp(min=0)
    best = torch.full((vocab,), float("inf"), dtype=pooled.dtype)
    scale, shift = torch.ones(vocab, dtype=pooled.dtype), torch.zeros(vocab, dtype=pooled.dtype)
    for s in REFIT_SCALES.tolist():
        for d in REFIT_SHIFTS.tolist():
            error = (torch.log1p(torch.relu(s * (own + d))) - target) ** 2
            loss = torch.zeros(vocab, dtype=pooled.dtype).index_add_(0, cols, error)
            fired = torch.log1p(torch.relu(s * (absent + d))) ** 2
            loss += absent_weight * (fired.sum(dim=1) + rest * fired[:, -1])
            loss /= n_own.clamp(min=1)
            if s == 1.0 and d == 0.0:
                before = loss.clone()
            better = loss < best
            best[better], scale[better], shift[better] = loss[better], s, d
    held = n_own > 0
    scale[~held], shift[~held] = 1.0, 0.0
    return scale, shift, float(best[held].mean()), float(before[held].mean())


@torch.no_grad()
def refit_output_head(model, tokenizer, texts: list[str], params: BuiltinParams) -> dict:
    """Rescale and shift each token's head row so its SPLADE weights fit :func:`lexical_targets` best
    (:func:`fit_token_affine`).

    The regression trains the whole model at one learning rate, so every token's weights move together: after
    it, rare tokens still weigh too little against frequent ones, and many tokens fire a little in texts that
    lack them. A per-token affine edit of the uncapped head, ``s * (logit + d)`` with ``s > 0``, commutes with
    SPLADE's max over positions, so it can be fitted exactly on the pooled logits in seconds.
    """
    pooled, _ = pooled_raw_logits(model, tokenizer, texts, params.max_length)
    targets = lexical_targets(tokenizer, texts, params.max_length)
    scale, shift, loss, before = fit_token_affine(pooled, targets, params.refit_absent_weight)
    head = model.classifier.emb2vocab
    head.bias.copy_((scale * (head.bias + shift)).to(head.bias.dtype))
    head.weight.mul_(scale.to(head.weight.dtype)[:, None])
    weights = torch.log1p(torch.relu(scale * (pooled + shift)))
    weights[:, tokenizer.all_special_ids] = 0
    return {
        "refit_loss_start": round(before, 4),
        "refit_loss_end": round(loss, 4),
        "refit_scale_median": round(float(scale.median()), 4),
        "refit_active_dims_mean": round(float((weights > 0).sum(dim=1).float().mean()), 1),
    }


def build_builtin_model(texts: list[str], params: BuiltinParams, out: Path) -> dict:
    """Write a hub-like snapshot of the builtin model to ``out``; return a report."""
    from transformers import AutoConfig, AutoModelForMaskedLM

    started = time.perf_counter()
    random.seed(params.seed)
    torch.manual_seed(params.seed)
    texts = sorted({t for t in texts if isinstance(t, str) and t.strip()})
    tokenizer = train_tokenizer(texts, params.vocab_size, params.max_length)
    log.info("builtin tokenizer: WordPiece, %d tokens, trained on %d texts", len(tokenizer), len(texts))
    out.mkdir(parents=True, exist_ok=True)
    write_remote_code(out, model_config(params, len(tokenizer)))
    config = AutoConfig.from_pretrained(out, trust_remote_code=True)
    torch.manual_seed(params.seed)
    model = AutoModelForMaskedLM.from_config(config, trust_remote_code=True)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("builtin model: %d layers, hidden %d, %.2f M parameters", params.num_layers, params.hidden_size, n_params / 1e6)
    report = pretrain(model, tokenizer, texts, params)
    report |= calibrate_output_head(model, tokenizer, texts, params)
    if params.lexical_steps:
        report |= regress_lexical(model, tokenizer, texts, params)
    if params.head_refit:
        report |= refit_output_head(model, tokenizer, texts, params)
    # Written by hand, as the published NorBERT4 code cannot save_pretrained under transformers 5.
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"), metadata={"format": "pt"})
    tokenizer.save_pretrained(out)
    report.update({"vocab_size": len(tokenizer), "parameters": n_params})  # no timings: the report is a DVC metric
    log.info("builtin model pre-trained: loss %.2f -> %.2f in %d steps (%.0f s)",
             report["loss_start"], report["loss_end"], report["steps"], time.perf_counter() - started)
    return report
