"""Our text-conditioned base: what it is given, save/load, and fine-tuning on the rare class."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from lusaug.generators.captions import CaptionError, build_vocab, caption, check_no_class, words
from lusaug.generators.frame_io import class_frames, load_frames, read_splits
from lusaug.generators.text_base import base_training_data, finetune_unet
from lusaug.generators.text_to_image import LusTextToImagePipeline, TextToImage

torch.set_num_threads(1)


def test_the_base_is_given_no_rare_class_frame_and_never_its_word(splits_csv, micro_params):
    splits = read_splits(splits_csv)
    data = base_training_data(splits, "viral", micro_params.base.classes)
    assert "viral" not in set(data.rows["label"]) and set(data.rows["split"]) == {"train"}
    viral_paths = set(splits.loc[splits["label"] == "viral", "path"])
    assert not viral_paths & set(data.rows["path"])
    assert len(data.texts) == len(data.rows)
    assert all("viral" not in words(t) for t in data.texts)
    assert "viral" not in data.vocab
    assert caption(data.rows.iloc[0]).startswith(f"{data.rows.iloc[0]['label']} lung ultrasound")


def test_rare_class_data_is_refused(splits_csv):
    splits = read_splits(splits_csv)
    viral = class_frames(splits, "viral")
    with pytest.raises(CaptionError, match="frames include"):
        check_no_class(["covid lung ultrasound"], viral, "viral")
    others = class_frames(splits, "covid")
    with pytest.raises(CaptionError, match="captions name"):
        check_no_class(["viral lung ultrasound"], others, "viral")
    with pytest.raises(CaptionError, match="vocabulary"):
        build_vocab(["viral lung"], forbidden=["viral"])


def test_save_from_pretrained_gives_the_same_samples_for_a_seed(tiny_base_dir, tmp_path):
    pipe = LusTextToImagePipeline.from_pretrained(tiny_base_dir)
    a = pipe("covid lung ultrasound, convex probe, fixture", num_inference_steps=3, seed=7)
    pipe.save_pretrained(tmp_path / "again")
    again = LusTextToImagePipeline.from_pretrained(tmp_path / "again")
    b = again("covid lung ultrasound, convex probe, fixture", num_inference_steps=3, seed=7)
    np.testing.assert_array_equal(a, b)
    c = again("covid lung ultrasound, convex probe, fixture", num_inference_steps=3, seed=8)
    assert a.shape == (1, 16, 16) and not np.array_equal(a, c)


def test_fine_tuning_changes_the_unet_and_never_the_text_encoder(
    tiny_base_dir, splits_csv, micro_params
):
    t2i = TextToImage.load(tiny_base_dir)
    te_before = {k: v.clone() for k, v in t2i.text_encoder.state_dict().items()}
    unet_before = {k: v.clone() for k, v in t2i.unet.state_dict().items()}
    rows = class_frames(read_splits(splits_csv), "viral")
    images = load_frames(rows, splits_csv, 32)
    cfg = dataclasses.replace(micro_params.generate.finetune, train_steps=2, batch_size=2)
    texts = [caption(r) for _, r in rows.iterrows()]
    res = finetune_unet(t2i, images, texts, cfg, seed=0, hflip=True, progress=False)
    assert len(res.losses) == 2
    for k, v in t2i.text_encoder.state_dict().items():
        assert torch.equal(v, te_before[k]), f"text encoder {k} changed"
    changed = [k for k, v in t2i.unet.state_dict().items() if not torch.equal(v, unet_before[k])]
    assert len(changed) > len(unet_before) // 2
