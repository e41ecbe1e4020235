"""Captions from frame metadata and the word-level tokenizer the base model is built with.

A caption says what the manifest knows about a frame: ``"<class> lung ultrasound, <probe> probe,
<source>"``. The base model learns from the OTHER classes' captions only, so its tokenizer's
vocabulary is built from those captions plus the textual-inversion template words (the base
sees them as Stable Diffusion saw 'a photo of': context that means nothing by itself). The rare
class's word is never in it: prompts that name the rare class map that word to ``[UNK]``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence

import pandas as pd

from lusaug.core.errors import LusaugError

# diffusers examples/textual_inversion: imagenet_templates_small / imagenet_style_templates_small
# (the study's TI prompts).
OBJECT_TEMPLATES = [
    "a photo of a {}",
    "a rendering of a {}",
    "a cropped photo of the {}",
    "the photo of a {}",
    "a photo of a clean {}",
    "a photo of a dirty {}",
    "a dark photo of the {}",
    "a photo of my {}",
    "a photo of the cool {}",
    "a close-up photo of a {}",
    "a bright photo of the {}",
    "a cropped photo of a {}",
    "a photo of the {}",
    "a good photo of the {}",
    "a photo of one {}",
    "a close-up photo of the {}",
    "a rendition of the {}",
    "a photo of the clean {}",
    "a rendition of a {}",
    "a photo of a nice {}",
    "a good photo of a {}",
    "a photo of the nice {}",
    "a photo of the small {}",
    "a photo of the weird {}",
    "a photo of the large {}",
    "a photo of a cool {}",
    "a photo of a small {}",
]
STYLE_TEMPLATES = [
    "a painting in the style of {}",
    "a rendering in the style of {}",
    "a cropped painting in the style of {}",
    "the painting in the style of {}",
    "a clean painting in the style of {}",
    "a dirty painting in the style of {}",
    "a dark painting in the style of {}",
    "a picture in the style of {}",
    "a cool painting in the style of {}",
    "a close-up painting in the style of {}",
    "a bright painting in the style of {}",
    "a good painting in the style of {}",
    "a close-up painting in the style of {}",
    "a rendition in the style of {}",
    "a nice painting in the style of {}",
    "a small painting in the style of {}",
    "a weird painting in the style of {}",
    "a large painting in the style of {}",
]
TEMPLATES = {"object": OBJECT_TEMPLATES, "style": STYLE_TEMPLATES}
SPECIALS = {"pad": "[PAD]", "unk": "[UNK]", "bos": "[BOS]", "eos": "[EOS]"}
_WORD = re.compile(r"[a-z0-9]+")


class CaptionError(LusaugError, ValueError):
    """Captions cannot be built (e.g. the rare class would reach the base model)."""


def words(text: str) -> list[str]:
    """Lower-case alphanumeric words (the tokenizer's pre-tokenisation, for vocabularies)."""
    return _WORD.findall(text.lower())


def _clean(value: object) -> str:
    return " ".join(words(str(value))) if pd.notna(value) and str(value) else "unknown"


def caption(row: pd.Series | dict) -> str:
    """The metadata caption of one manifest row."""
    return (
        f"{_clean(row['label'])} lung ultrasound, {_clean(row['probe'])} probe, "
        f"{_clean(row['source'])}"
    )


def captions(rows: pd.DataFrame) -> list[str]:
    """One caption per manifest row, in order."""
    return [caption(r) for _, r in rows.iterrows()]


def template_words() -> set[str]:
    return {w for t in OBJECT_TEMPLATES + STYLE_TEMPLATES for w in words(t.format(""))}


def build_vocab(texts: Iterable[str], forbidden: Sequence[str] = ()) -> dict[str, int]:
    """Specials, then the sorted words of ``texts`` and the templates; never a forbidden word."""
    found = set(template_words())
    for t in texts:
        found.update(words(t))
    bad = sorted(found & {w.lower() for w in forbidden})
    if bad:
        raise CaptionError(f"the base model's vocabulary would contain {bad}; it must not")
    vocab = {tok: i for i, tok in enumerate(SPECIALS.values())}
    for w in sorted(found):
        vocab[w] = len(vocab)
    return vocab


def build_tokenizer(vocab: dict[str, int], max_length: int):
    """A word-level fast tokenizer (``[BOS] words [EOS]``, padded with ``[PAD]``); no hub."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.WordLevel(vocab, unk_token=SPECIALS["unk"]))
    tk.normalizer = normalizers.Lowercase()
    tk.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(behavior="removed")]
    )
    bos, eos = SPECIALS["bos"], SPECIALS["eos"]
    tk.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", special_tokens=[(bos, vocab[bos]), (eos, vocab[eos])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tk,
        unk_token=SPECIALS["unk"],
        pad_token=SPECIALS["pad"],
        bos_token=bos,
        eos_token=eos,
        model_max_length=max_length,
    )


def training_caption(text: str, rnd: random.Random, template_prob: float, dropout: float) -> str:
    """What one training step sees: "" (dropout), a template around the caption, or the caption."""
    u = rnd.random()
    if u < dropout:
        return ""
    if u < dropout + (1.0 - dropout) * template_prob:
        pool = OBJECT_TEMPLATES if rnd.random() < 0.5 else STYLE_TEMPLATES
        return rnd.choice(pool).format(text)
    return text


def check_no_class(texts: Iterable[str], rows: pd.DataFrame, target_class: str) -> None:
    """Refuse base-model data that holds the rare class (frames or its word)."""
    if (rows["label"] == target_class).any():
        raise CaptionError(f"the base model's frames include class {target_class!r}")
    bad = [t for t in texts if target_class.lower() in words(t)]
    if bad:
        raise CaptionError(f"captions name {target_class!r}, e.g. {bad[0]!r}")
